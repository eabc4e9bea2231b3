"""How long entries live: fresh for the TTL, then kept for the stale window, so that an
expired entry can still be served when the upstream fails (stale-if-error).

Entries are read by the admission script and written by its settle script
(`admission.py`), each in a Redis round trip the request makes anyway.
"""

from __future__ import annotations

from llm_gateway.cache.entry import Entry
from llm_gateway.vocabulary import Form


class EntryLifetime:
    def __init__(self, ttl_seconds: int, stale_seconds: int) -> None:
        self._ttl_ms = ttl_seconds * 1000
        self.keep_ms = (ttl_seconds + stale_seconds) * 1000

    def entry(self, form: Form, body: bytes, now_ms: int, tokens: int = 0) -> Entry:
        fresh_until = now_ms + self._ttl_ms
        return Entry(form, body, stored_at_ms=now_ms, fresh_until_ms=fresh_until, tokens=tokens)

    def record(
        self, key: str, form: Form, body: bytes, now_ms: int, tokens: int = 0
    ) -> tuple[str, bytes, int]:
        """`(key, payload, keep_ms)`, ready for `Admitter.settle`."""
        return key, self.entry(form, body, now_ms, tokens).encode(), self.keep_ms
