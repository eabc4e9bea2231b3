"""The models the upstream serves and their digests, refreshed from /api/tags.

The digest is part of every cache key, so a re-pulled model (new digest) never
serves entries of its previous version. It also bounds metric labels: a model the
upstream does not list is counted as `other`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import orjson

from llm_gateway.keys import normalize_model
from llm_gateway.metrics import OTHER_MODEL, GatewayMetrics
from llm_gateway.upstream import Upstream, UpstreamFailure

log = logging.getLogger("llm_gateway.catalog")


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
