"""Redis as a helper: redis-py's asyncio client, every call bounded, failures never propagate.

Two kinds of failure, treated differently:

- Redis is unreachable or slow (connection lost or refused, a timeout): the guard
  skips Redis for everyone for `retry_after` seconds, so a dead or hanging Redis
  costs one timeout per interval rather than one per request.
- Redis answered with an error (OOM, WRONGTYPE, a script error): that one call fails
  and is counted; Redis itself is fine and the next call goes to it as usual.

Either way the caller gets `UNAVAILABLE` instead of an exception and serves the
request without Redis.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from llm_gateway.metrics import GatewayMetrics
from llm_gateway.redis_batch import BatchingClient

T = TypeVar("T")
log = logging.getLogger("llm_gateway.redis")

# Unreachable or slow: skip Redis for a moment. (redis-py's AuthenticationError is a
# ConnectionError: a wrong password is a Redis we cannot use, like a dead one.)
_LOST = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


class Unavailable:
    """Returned instead of a result when Redis could not answer."""

    __slots__ = ()


UNAVAILABLE = Unavailable()


def connect(url: str, timeout: float, ca_file: Path | None = None) -> redis.Redis:
    """A pooled client for `url` (redis://, rediss://, unix://; password, ACL user, db).

    No retries inside redis-py: the guard decides what a failure means, and a retry
    would double the time a slow Redis holds a request.
    """
    options: dict[str, Any] = {}
    if url.startswith("rediss://") and ca_file is not None:
        options["ssl_ca_certs"] = str(ca_file)
    client: redis.Redis = redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        **options,
    )
    return client


class RedisGuard:
    def __init__(self, client: redis.Redis, retry_after: float, metrics: GatewayMetrics) -> None:
        self.client = client
        # The request path's commands, batched per turn of the event loop.
        self.batch = BatchingClient(client)
        self._retry_after = retry_after
        self._metrics = metrics
        self._down_until = 0.0
        self._logged_down = False
        # SHA-1 of each Lua script, by source (Redis names scripts by SHA-1).
        self._shas: dict[str, str] = {}

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
        except _LOST as exc:
            self._metrics.redis_errors.labels(operation).inc()
            self._down_until = time.monotonic() + self._retry_after
            if not self._logged_down:
                log.warning("redis unavailable (%s: %s); serving without it", operation, exc)
                self._logged_down = True
            return UNAVAILABLE
        except RedisError as exc:
            # An error reply: this call failed, Redis did not.
            self._metrics.redis_errors.labels(operation).inc()
            log.warning("redis refused %s: %s", operation, exc)
            return UNAVAILABLE
        if self._logged_down:
            log.warning("redis is back")
            self._logged_down = False
            self._down_until = 0.0
        return result

    async def execute(self, operation: str, *args: Any) -> Any:
        """One command on the request path (batched with this turn's others), guarded."""
        batch = self.batch
        return await self.run(operation, lambda: batch.execute(*args))

    async def script(
        self, operation: str, source: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """Run a Lua script by SHA, loading it when Redis does not know it, guarded."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324
        batch = self.batch

        async def call() -> Any:
            try:
                return await batch.execute("EVALSHA", sha, len(keys), *keys, *args)
            except NoScriptError:  # a restarted or flushed Redis
                await batch.execute("SCRIPT", "LOAD", source)
                return await batch.execute("EVALSHA", sha, len(keys), *keys, *args)

        return await self.run(operation, call)

    async def ping(self) -> bool:
        result = await self.run("ping", self.client.ping, force=True)
        return result is True

    async def aclose(self) -> None:
        await self.client.aclose()
