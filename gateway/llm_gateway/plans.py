"""What one generation request may get: its cache plan and the form it asked for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_gateway.cache.canonical import cache_key, is_deterministic, is_load_only
from llm_gateway.vocabulary import Form, Kind, normalize_model


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What the cache may do for one request."""

    key: str | None  # None: the cache plays no part (X-Cache: BYPASS)
    lookup: bool
    store: bool


NO_CACHE = CachePlan(None, lookup=False, store=False)


def cache_plan(
    mode: str,
    kind: Kind,
    data: dict[str, Any],
    headers: dict[str, str],
    digest: str | None,
    namespace: str = "",
) -> CachePlan | None:
    """The plan; None when the request would be cacheable but its model's digest is unknown.
    `namespace`: who may share the entry (and the upstream call), `keys.cache_namespace`."""
    if mode == "off" or is_load_only(kind, data):
        return NO_CACHE
    if mode == "deterministic" and not is_deterministic(kind, data):
        return NO_CACHE
    if digest is None:
        return None
    directives = headers.get("cache-control", "").lower()
    no_store = "no-store" in directives
    no_cache = no_store or "no-cache" in directives
    key = cache_key(kind, normalize_model(data["model"]), digest, data, namespace)
    return CachePlan(key, lookup=not no_cache, store=not no_store)


@dataclass(frozen=True, slots=True)
class Wanted:
    """The form the client asked for."""

    form: Form
    include_usage: bool = False


def wanted_form(kind: Kind, data: dict[str, Any]) -> Wanted:
    if kind.is_embedding:
        return Wanted(Form.JSON)
    if kind.is_openai:
        if data.get("stream") is True:
            options = data.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return Wanted(Form.SSE, usage)
        return Wanted(Form.JSON)
    # Ollama's native API streams unless told not to.
    return Wanted(Form.JSON if data.get("stream") is False else Form.NDJSON)
