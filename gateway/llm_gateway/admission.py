"""Per-key limits, token quotas and the cache lookup in one atomic Redis round trip, and
the end of a request's Redis side (free its slot, settle its tokens, add its usage) in
another. The scripts are `lua/admit.lua` and `lua/settle.lua`.

This is where the response cache is read and written. Read: the `GET` in admit.lua
when the cache shares the state Redis (one trip with the limits), else a `GET` on the
cache's own Redis just before it. Written: a `SET` of its own (`store`), never in the
script that settles quotas, so that a refused or failed write (out of memory, the
cache's Redis gone) costs the entry only. What an entry holds and how it is laid out
is `cache/entry.py`; how long it lives, `cache/lifetime.py`.

Rate: GCRA over a one-minute window (a key may spend its whole minute at once, then
one request per 60/rpm seconds). Concurrency: a sorted set of leases that expire on
their own, so a crashed replica never holds a slot forever. A fresh cache hit
consumes rate but no concurrency slot (it never reaches Ollama). Tokens: GCRA per
minute (a request takes its estimate at once, settled with the real count when it
ends) and a counter per UTC day; hits cost none unless configured to.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from enum import IntEnum
from importlib.resources import files
from typing import Any

from llm_gateway.cache.entry import Entry, lua_fresh_until, lua_tokens
from llm_gateway.quotas import Charge, UsageTarget, go_duration, seconds_to_utc_midnight
from llm_gateway.redis_guard import UNAVAILABLE, RedisGuard, Unavailable

_LUA = files("llm_gateway") / "lua"
_ADMIT = (
    (_LUA / "admit.lua")
    .read_text(encoding="utf-8")
    .replace("FRESH_UNTIL", lua_fresh_until("value"))
    .replace("ENTRY_TOKENS", lua_tokens("value"))
)
_SETTLE = (_LUA / "settle.lua").read_text(encoding="utf-8")
_MINUTE_MS = 60000
# A day counter outlives its day (a request admitted at 23:59 settles after midnight).
_DAY_COUNTER_SECONDS = 2 * 86400
_NONE = "llm:none"


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
    TOKENS_PER_MINUTE = 4
    TOKENS_PER_DAY = 5


# The `limit` label of llm_rate_limited_total, by verdict.
LIMIT_LABELS = {
    Verdict.RATE_LIMITED: "rpm",
    Verdict.TOO_MANY_CONCURRENT: "concurrency",
    Verdict.TOKENS_PER_MINUTE: "tpm",
    Verdict.TOKENS_PER_DAY: "tpd",
}


@dataclass(frozen=True, slots=True)
class Limits:
    key_name: str
    requests_per_minute: int
    max_concurrent: int
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    cached: bytes | None
    # -1 when no limits applied; ms values from the script.
    remaining: int
    reset_ms: float
    retry_after_ms: float
    lease: Lease | None
    # -1 when the key has no per-minute token quota.
    tokens_remaining: int = -1
    tokens_reset_ms: float = 0.0
    # What the admission charged the key's token quotas (settled at the end).
    charge: Charge | None = None
    # False when the cache's own Redis could not be asked (the cache played no part).
    looked_up: bool = True

    @property
    def limited(self) -> bool:
        return self.verdict not in (Verdict.PROCEED, Verdict.HIT)

    def rate_headers(self, limits: Limits) -> dict[str, str]:
        if self.remaining < 0:
            return {}
        headers = {
            "X-RateLimit-Limit": str(limits.requests_per_minute),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_ms / 1000)),
        }
        if self.verdict is Verdict.TOKENS_PER_DAY and limits.tokens_per_day is not None:
            # Refused for the day: the headers speak of the window that refused.
            headers["x-ratelimit-limit-tokens"] = str(limits.tokens_per_day)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, self.tokens_remaining))
            headers["x-ratelimit-reset-tokens"] = go_duration(seconds_to_utc_midnight())
        elif limits.tokens_per_minute is not None and self.tokens_remaining >= 0:
            # The names OpenAI's clients already read (their reset is a Go duration).
            headers["x-ratelimit-limit-tokens"] = str(limits.tokens_per_minute)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, self.tokens_remaining))
            headers["x-ratelimit-reset-tokens"] = go_duration(self.tokens_reset_ms / 1000)
        if self.limited:
            retry_ms = self.retry_after_ms
            if self.verdict is Verdict.TOKENS_PER_DAY:
                retry_ms = seconds_to_utc_midnight() * 1000
            headers["Retry-After"] = str(max(1, math.ceil(retry_ms / 1000)))
        return headers


def _usage_keys(usage: UsageTarget | None, retention_seconds: int) -> tuple[str, int, str]:
    if usage is None or retention_seconds == 0:
        return _NONE, 0, ""
    return f"llm:usage:{usage.day}:{usage.key_name}", retention_seconds, f"{usage.model_label}|"


class Admitter:
    def __init__(
        self,
        guard: RedisGuard,
        lease_seconds: float,
        usage_retention_days: int = 90,
        hits_cost_tokens: bool = False,
        cache: RedisGuard | None = None,
    ) -> None:
        self._guard = guard
        # The cache's Redis: `guard` itself when the cache shares the state Redis.
        self._cache = cache or guard
        self._lease_ms = lease_seconds * 1000
        # Usage hashes live a day longer than asked, so the last day is whole.
        self._usage_seconds = (usage_retention_days + 1) * 86400 if usage_retention_days else 0
        self._hits_cost = hits_cost_tokens

    async def admit(
        self,
        limits: Limits | None,
        cache_key: str | None,
        now_ms: int,
        estimate: int = 0,
        usage: UsageTarget | None = None,
        needed: int | None = None,
    ) -> Admission | Unavailable:
        """`estimate` is charged; `needed` (default: all of it) must fit the quotas."""
        if limits is None and cache_key is None and usage is None:
            return Admission(Verdict.PROCEED, None, -1, 0, 0, None)
        # The cache: 0 no lookup, 1 looked up by the script, 2 looked up here.
        lookup, cached, fresh_until, entry_tokens, looked_up = 0, None, 0, 0, True
        if cache_key is not None:
            if self._cache is self._guard:
                lookup = 1
            else:
                raw = await self._cache.execute("lookup", "GET", cache_key)
                if isinstance(raw, Unavailable):
                    looked_up = False  # a miss; never a reason to fail the request
                elif isinstance(raw, bytes) and (head := Entry.peek(raw)) is not None:
                    lookup, cached = 2, raw
                    fresh_until, entry_tokens = head
        lease = os.urandom(8).hex() if limits is not None else None
        name = limits.key_name if limits else "-"
        day = usage.day if usage is not None else ""
        tpm = limits.tokens_per_minute if limits else None
        tpd = limits.tokens_per_day if limits else None
        token_interval = _MINUTE_MS / tpm if tpm else 0
        usage_key, usage_seconds, prefix = _usage_keys(usage, self._usage_seconds)
        keys = [
            f"llm:rl:{name}",
            f"llm:cc:{name}",
            cache_key if cache_key is not None and lookup == 1 else _NONE,
            f"llm:tpm:{name}",
            f"llm:tpd:{name}:{day}",
            usage_key,
        ]
        args: list[Any] = [
            now_ms,
            1 if limits else 0,
            _MINUTE_MS / limits.requests_per_minute if limits else 0,
            _MINUTE_MS,
            limits.max_concurrent if limits else 0,
            lease or "",
            now_ms + self._lease_ms,
            lookup,
            estimate,
            token_interval,
            tpd or 0,
            _DAY_COUNTER_SECONDS,
            usage_seconds,
            prefix,
            1 if self._hits_cost else 0,
            fresh_until,
            entry_tokens,
            estimate if needed is None else needed,
        ]
        result = await self._guard.script("admit", _ADMIT, keys, args)
        if isinstance(result, Unavailable):
            return UNAVAILABLE
        verdict = Verdict(int(result[0]))
        charged = verdict is Verdict.PROCEED and limits is not None and (tpm or tpd)
        if lookup == 1 and isinstance(result[4], bytes):
            cached = result[4]
        return Admission(
            verdict,
            cached if verdict <= Verdict.HIT else None,
            int(result[1]),
            float(result[2]),
            float(result[3]),
            Lease(name, lease) if lease is not None and verdict is Verdict.PROCEED else None,
            int(result[5]),
            float(result[6]),
            Charge(name, day, estimate, token_interval, tpd or 0) if charged else None,
            looked_up,
        )

    async def store(self, key: str, payload: bytes, keep_ms: int) -> None:
        """Write a cache entry: a command of its own, on the cache's Redis."""
        await self._cache.execute("store", "SET", key, payload, "PX", keep_ms)

    async def settle(
        self,
        lease: Lease | None,
        *,
        charge: Charge | None = None,
        tokens: int = 0,
        usage: UsageTarget | None = None,
        counts: dict[str, int] | None = None,
        now_ms: int = 0,
    ) -> None:
        """One round trip: free `lease`, settle `charge` with the real `tokens`, and add
        `counts` to the usage of `usage`."""
        usage_key, usage_seconds, prefix = _usage_keys(usage, self._usage_seconds)
        if counts is None:
            usage_seconds = 0
        delta = tokens - charge.tokens if charge is not None else 0
        if not delta and not usage_seconds:
            if lease is not None:
                key, lease_id = f"llm:cc:{lease.key_name}", lease.lease_id
                await self._guard.execute("release", "ZREM", key, lease_id)
            return
        keys = [
            f"llm:cc:{lease.key_name}" if lease else _NONE,
            f"llm:tpm:{charge.key_name}" if charge else _NONE,
            f"llm:tpd:{charge.key_name}:{charge.day}" if charge else _NONE,
            usage_key,
        ]
        args: list[Any] = [
            lease.lease_id if lease else "",
            delta,
            charge.token_interval if charge else 0,
            charge.per_day if charge else 0,
            usage_seconds,
            prefix,
            now_ms,
        ]
        for field, increment in (counts or {}).items():
            args += [field, increment]
        await self._guard.script("settle", _SETTLE, keys, args)
