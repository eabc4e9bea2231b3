"""Per-key limits and the cache lookup in one atomic Redis round trip (a Lua script),
and the end of a request's Redis side (store its entry, free its slot) in another.

This is where the response cache is read and written: the read is the `GET` in
`_ADMIT` (one trip with the limits), the write the `SET` in `_SETTLE` (one trip with
freeing the slot). What an entry holds and how it is laid out is `cache/entry.py`;
how long it lives, `cache/lifetime.py`.

Rate: GCRA over a one-minute window (a key may spend its whole minute at once, then
one request per 60/rpm seconds). Concurrency: a sorted set of leases that expire on
their own, so a crashed replica never holds a slot forever. A fresh cache hit
consumes rate but no concurrency slot (it never reaches Ollama).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from enum import IntEnum

from llm_gateway.cache.entry import lua_fresh_until
from llm_gateway.redis_guard import UNAVAILABLE, RedisGuard, Unavailable

_ADMIT = """
local now = tonumber(ARGV[1])
local limits = ARGV[2] == '1'
local interval = tonumber(ARGV[3])
local capacity = tonumber(ARGV[4])
local max_concurrent = tonumber(ARGV[5])
local lease_id = ARGV[6]
local lease_until = tonumber(ARGV[7])
local lookup = ARGV[8] == '1'

local new_tat = 0
local remaining = -1
local reset = 0
if limits then
  local tat = tonumber(redis.call('GET', KEYS[1]) or now)
  if tat < now then tat = now end
  new_tat = tat + interval
  local used = new_tat - now
  if used > capacity then
    return {2, 0, tat - now, used - capacity, false}
  end
  remaining = math.floor((capacity - used) / interval)
  reset = used
end

local value = false
if lookup then
  value = redis.call('GET', KEYS[3])
  if value and FRESH_UNTIL > now then
    if limits then redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now)) end
    return {1, remaining, reset, 0, value}
  end
end

if limits then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= max_concurrent then
    return {3, remaining, reset, 1000, false}
  end
  redis.call('ZADD', KEYS[2], lease_until, lease_id)
  redis.call('PEXPIRE', KEYS[2], math.ceil(lease_until - now))
  redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now))
end
return {0, remaining, reset, 0, value}
""".replace("FRESH_UNTIL", lua_fresh_until("value"))


# Ends a request's Redis side in one round trip: store its entry and/or free its slot.
_SETTLE = """
if ARGV[1] ~= '' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A concurrency slot held by one request."""

    key_name: str
    lease_id: str


class Verdict(IntEnum):
    PROCEED = 0  # go upstream (with `cached` holding a stale entry, if any)
    HIT = 1  # `cached` is fresh
    RATE_LIMITED = 2
    TOO_MANY_CONCURRENT = 3


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    cached: bytes | None
    # -1 when no limits applied; ms values from the script.
    remaining: int
    reset_ms: float
    retry_after_ms: float
    lease: Lease | None

    @property
    def limited(self) -> bool:
        return self.verdict in (Verdict.RATE_LIMITED, Verdict.TOO_MANY_CONCURRENT)

    def rate_headers(self, limit: int) -> dict[str, str]:
        if self.remaining < 0:
            return {}
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_ms / 1000)),
        }
        if self.limited:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_ms / 1000)))
        return headers


@dataclass(frozen=True, slots=True)
class Limits:
    key_name: str
    requests_per_minute: int
    max_concurrent: int


class Admitter:
    def __init__(self, guard: RedisGuard, lease_seconds: float) -> None:
        self._guard = guard
        self._lease_ms = lease_seconds * 1000

    async def admit(
        self, limits: Limits | None, cache_key: str | None, now_ms: int
    ) -> Admission | Unavailable:
        if limits is None and cache_key is None:
            return Admission(Verdict.PROCEED, None, -1, 0, 0, None)
        lease = os.urandom(8).hex() if limits is not None else None
        name = limits.key_name if limits else "-"
        keys = [f"llm:rl:{name}", f"llm:cc:{name}", cache_key or "llm:none"]
        args = [
            now_ms,
            1 if limits else 0,
            60000 / limits.requests_per_minute if limits else 0,
            60000 if limits else 0,
            limits.max_concurrent if limits else 0,
            lease or "",
            now_ms + self._lease_ms,
            1 if cache_key else 0,
        ]
        result = await self._guard.script("admit", _ADMIT, keys, args)
        if isinstance(result, Unavailable):
            return UNAVAILABLE
        verdict = Verdict(int(result[0]))
        cached = result[4] if isinstance(result[4], bytes) else None
        return Admission(
            verdict,
            cached,
            int(result[1]),
            float(result[2]),
            float(result[3]),
            Lease(name, lease) if lease is not None and verdict is Verdict.PROCEED else None,
        )

    async def settle(
        self, lease: Lease | None, store: tuple[str, bytes, int] | None = None
    ) -> None:
        """Free `lease` and/or store `(key, payload, keep_ms)`: one round trip for both."""
        if lease is None and store is None:
            return
        guard = self._guard
        if store is None and lease is not None:
            name, lease_id = lease.key_name, lease.lease_id
            await guard.execute("release", "ZREM", f"llm:cc:{name}", lease_id)
            return
        key, payload, keep_ms = store if store is not None else ("llm:none", b"", 0)
        keys = [key, f"llm:cc:{lease.key_name}" if lease else "llm:none"]
        args: list[bytes | str | int] = [payload, keep_ms, lease.lease_id if lease else ""]
        await guard.script("store", _SETTLE, keys, args)
