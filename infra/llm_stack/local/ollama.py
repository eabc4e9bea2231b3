"""The Ollama side of a local run: a real Ollama if one answers, otherwise emulators."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from llm_stack.local.errors import LocalStackError

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
PROBE_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class RealOllama:
    url: str
    version: str

    @property
    def address(self) -> str:
        """host:port, as the nginx balancer names its upstream."""
        return host_port(self.url)


def host_port(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LocalStackError(
            f"--ollama-url {url!r} is not an http://host:port URL",
            "give the URL Ollama listens on, e.g. --ollama-url http://127.0.0.1:11434",
        )
    if parts.path not in ("", "/"):
        raise LocalStackError(
            f"--ollama-url {url!r} has a path; the balancer needs Ollama's root URL",
            "give only scheme, host and port, e.g. http://127.0.0.1:11434",
        )
    port = parts.port or 80
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def _get_json(url: str, timeout: float) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
        return json.loads(response.read())


def probe_ollama(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> RealOllama | None:
    """A real Ollama answering GET /api/version at `url` within `timeout`, else None."""
    host_port(url)  # reject a malformed URL before any network call
    try:
        body = _get_json(url.rstrip("/") + "/api/version", timeout)
    except (OSError, urllib.error.URLError, ValueError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("version"), str):
        return None
    return RealOllama(url=url.rstrip("/"), version=body["version"])


def missing_models(ollama: RealOllama, models: Sequence[str]) -> list[str]:
    """Configured models the real Ollama has not pulled (by /api/tags)."""
    try:
        body = _get_json(ollama.url + "/api/tags", PROBE_TIMEOUT_SECONDS * 5)
    except (OSError, urllib.error.URLError, ValueError):
        return []
    listed = body.get("models", []) if isinstance(body, dict) else []
    names = {m.get("name") for m in listed if isinstance(m, dict)}
    names |= {n.removesuffix(":latest") for n in names if isinstance(n, str)}
    return [m for m in models if m not in names and f"{m}:latest" not in names]
