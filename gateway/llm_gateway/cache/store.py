"""Writing entries: kept for TTL + stale window, so an expired entry can still be served
when the upstream fails (stale-if-error). Reads go through the admission script."""

from __future__ import annotations

from llm_gateway.cache.entry import Entry, Form
from llm_gateway.redis_guard import RedisGuard


class CacheStore:
    def __init__(self, guard: RedisGuard, ttl_seconds: int, stale_seconds: int) -> None:
        self._guard = guard
        self._ttl_ms = ttl_seconds * 1000
        self._keep_ms = (ttl_seconds + stale_seconds) * 1000

    def entry(self, form: Form, body: bytes, now_ms: int) -> Entry:
        return Entry(form, body, stored_at_ms=now_ms, fresh_until_ms=now_ms + self._ttl_ms)

    async def put(self, key: str, entry: Entry) -> bool:
        client = self._guard.client
        payload = entry.encode()
        result = await self._guard.run("store", lambda: client.set(key, payload, px=self._keep_ms))
        return result is True
