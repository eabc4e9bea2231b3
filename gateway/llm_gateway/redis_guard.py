"""Redis as a helper: every call bounded by a short timeout, failures never propagate.

After a failure the guard skips Redis for a moment (`retry_after`), so a dead or
hanging Redis costs one timeout per interval rather than one per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from llm_gateway.metrics import GatewayMetrics
from llm_gateway.redis_client import RedisClient, RedisReplyError

T = TypeVar("T")
log = logging.getLogger("llm_gateway.redis")


class Unavailable:
    """Returned instead of a result when Redis could not answer in time."""

    __slots__ = ()


UNAVAILABLE = Unavailable()


class RedisGuard:
    def __init__(self, client: RedisClient, retry_after: float, metrics: GatewayMetrics) -> None:
        # The client bounds every call with its own timeout (see redis_client.py).
        self.client = client
        self._retry_after = retry_after
        self._metrics = metrics
        self._down_until = 0.0
        self._logged_down = False

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    async def run(
        self, operation: str, call: Callable[[], Awaitable[T]], force: bool = False
    ) -> T | Unavailable:
        """`call()`, or UNAVAILABLE; `force` tries even while Redis is considered down."""
        if not force and not self.available:
            return UNAVAILABLE
        try:
            result = await call()
        except (TimeoutError, ConnectionError, OSError, RedisReplyError) as exc:
            self._metrics.redis_errors.labels(operation).inc()
            self._down_until = time.monotonic() + self._retry_after
            # A Redis that went away leaves a dead connection: the first try after
            # `retry_after` must use a fresh one.
            self.client.reset()
            if not self._logged_down:
                log.warning("redis unavailable (%s: %s); serving without it", operation, exc)
                self._logged_down = True
            return UNAVAILABLE
        if self._logged_down:
            log.warning("redis is back")
            self._logged_down = False
            self._down_until = 0.0
        return result

    async def ping(self) -> bool:
        client = self.client
        result = await self.run("ping", lambda: client.call("PING"), force=True)
        return result == b"PONG"
