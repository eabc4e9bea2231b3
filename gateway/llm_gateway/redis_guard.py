"""Redis as a helper: every call bounded by a short timeout, failures never propagate.

After a failure the guard skips Redis for a moment (`retry_after`), so a dead or
hanging Redis costs one timeout per interval rather than one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from llm_gateway.metrics import GatewayMetrics

T = TypeVar("T")
log = logging.getLogger("llm_gateway.redis")


class Unavailable:
    """Returned instead of a result when Redis could not answer in time."""

    __slots__ = ()


UNAVAILABLE = Unavailable()


def redis_client(url: str, timeout: float) -> Redis:
    # No socket_timeout: redis-py would then arm a timer for every write and every
    # read (a measurable share of the hot path); `RedisGuard.run` bounds each whole
    # call with one timer instead.
    return Redis.from_url(
        url,
        socket_timeout=None,
        socket_connect_timeout=timeout,
        health_check_interval=0,
        retry_on_timeout=False,
        max_connections=512,
    )


class RedisGuard:
    def __init__(
        self, client: Redis, timeout: float, retry_after: float, metrics: GatewayMetrics
    ) -> None:
        self.client = client
        self._timeout = timeout
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
        """`call()` within the timeout; `force` tries even while Redis is considered down."""
        if not force and not self.available:
            return UNAVAILABLE
        try:
            async with asyncio.timeout(self._timeout):
                result = await call()
        except (TimeoutError, RedisError, OSError) as exc:
            self._metrics.redis_errors.labels(operation).inc()
            self._down_until = time.monotonic() + self._retry_after
            # Pooled connections to a Redis that went away are dead: drop them all, so
            # the first try after `retry_after` uses a fresh connection.
            with contextlib.suppress(Exception):
                await self.client.connection_pool.disconnect()
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
        result = await self.run("ping", self.client.ping, force=True)
        return result is True
