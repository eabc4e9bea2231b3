"""The models the upstream serves and their digests, refreshed from /api/tags.

The digest is part of every cache key, so a re-pulled model (new digest) never
serves entries of its previous version. It also bounds metric labels: a model the
upstream does not list is counted as `other`. `visible_models` cuts a listing down
to the models a key may use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from llm_gateway.keys import ApiKey
from llm_gateway.metrics import OTHER_MODEL, GatewayMetrics
from llm_gateway.upstream import Upstream, UpstreamFailure
from llm_gateway.vocabulary import normalize_model

log = logging.getLogger("llm_gateway.catalog")


# The list in each listing, and the field naming a model in its items.
_LISTINGS = {
    "tags": ("models", "model"),
    "ps": ("models", "model"),
    "openai_models": ("data", "id"),
}


def visible_models(endpoint: str, body: bytes, api_key: ApiKey) -> bytes:
    """A listing (/api/tags, /api/ps, /v1/models) with only the models `api_key` may use."""
    fields = _LISTINGS.get(endpoint)
    if fields is None or api_key.models is None:
        return body
    items, name_field = fields
    try:
        listing = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(listing, dict) or not isinstance(listing.get(items), list):
        return body  # (/v1/models/<m> is one model, already checked against the key)

    def allowed(item: Any) -> bool:
        if not isinstance(item, dict):
            return False
        name = item.get(name_field) or item.get("name")
        return isinstance(name, str) and api_key.allows(name)

    listing[items] = [item for item in listing[items] if allowed(item)]
    return orjson.dumps(listing)


class ModelCatalog:
    def __init__(
        self, upstream: Callable[[], Upstream], metrics: GatewayMetrics, refresh_seconds: float
    ):
        # Which upstream to ask (with model-aware routing, any instance that is up).
        self._upstream = upstream
        self._metrics = metrics
        self._refresh_seconds = refresh_seconds
        self._digests: dict[str, str] = {}
        # Bytes on disk per model (/api/tags `size`): a first guess of what a load takes.
        self._sizes: dict[str, int] = {}
        self._last_refresh = 0.0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def digest(self, model: str) -> str | None:
        return self._digests.get(normalize_model(model))

    def size(self, model: str) -> int:
        """The model's weights in bytes (0 when unknown)."""
        return self._sizes.get(normalize_model(model), 0)

    def label(self, model: str | None) -> str:
        if not model:
            return OTHER_MODEL
        name = normalize_model(model)
        if name in self._digests:
            return name.removesuffix(":latest")
        return OTHER_MODEL

    async def refresh(self) -> bool:
        try:
            async with self._upstream().request("GET", "/api/tags", None, {}) as response:
                body = await response.read()
            if response.status != 200:
                raise UpstreamFailure("status", response.status, f"/api/tags: {response.status}")
            models = orjson.loads(body).get("models") or []
            listed = [
                m for m in models if isinstance(m, dict) and (m.get("model") or m.get("name"))
            ]
            digests = {
                normalize_model(str(m.get("model") or m.get("name"))): str(m.get("digest", ""))
                for m in listed
            }
            sizes = {
                normalize_model(str(m.get("model") or m.get("name"))): m["size"]
                for m in listed
                if isinstance(m.get("size"), int)
            }
        except (UpstreamFailure, orjson.JSONDecodeError, AttributeError) as exc:
            self._metrics.upstream_up.set(0)
            log.warning("cannot read the upstream's models: %s", exc)
            return False
        new_models = set(digests) - set(self._digests)
        self._digests = digests
        self._sizes = sizes
        self._last_refresh = time.monotonic()
        self._metrics.upstream_up.set(1)
        if new_models:
            self._metrics.start_series(sorted(self.label(m) for m in new_models))
        return True

    async def refresh_if_stale(self, min_age: float = 1.0) -> None:
        """Refresh now (at most once per `min_age`), for a model not seen yet."""
        if time.monotonic() - self._last_refresh < min_age or self._lock.locked():
            return
        async with self._lock:
            await self.refresh()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self.refresh()

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="model-catalog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
