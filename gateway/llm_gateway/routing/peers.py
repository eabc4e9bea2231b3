"""Sharing in-flight counts and queue heads between gateway replicas, through Redis.

Alone, each replica believes every slot of every instance is its own: with R
replicas an instance gets up to R x num_parallel requests per model, the surplus
waits inside Ollama in arrival order, and the gateway's priorities and fairness no
longer decide who goes next (measured by bench/system: two replicas doubled the
interactive p95 in overload). With GATEWAY_SHARE_IN_FLIGHT each replica publishes,
in one Redis hash, what it has in flight per instance and model and the head of its
queue per model (priority class, when it was queued). The others read it:

- a slot counts as taken when any replica holds it (`Residency.elsewhere`);
- when a slot frees, the replica whose waiting request has the highest class, then
  whose key was served least lately (across replicas), then has waited longest, takes
  it; the others leave it (`Dispatcher._yields_to_peer`). "Fewest" is recent service
  (dispatches over the key's weight, halving every 30 s), so fairness between keys
  holds across replicas, not only inside each one's fair queue.

A replica publishes when its own state changes (at most every `min_gap` seconds)
and as a heartbeat; every publication is announced on a pub/sub channel, and the
others then read the hash at once, so a freed slot is seen in about a Redis round
trip. A replica that stops publishing drops out after three heartbeats. Without
Redis each replica goes on alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from llm_gateway.redis_guard import RedisGuard, Unavailable
from llm_gateway.routing.clock import Clock, SystemClock

log = logging.getLogger("llm_gateway.routing")

STATES = "llm:peers:state"  # hash: replica id -> JSON of its state
SEEN = "llm:peers:seen"  # zset: replica id -> last publication (ms)
CHANNEL = "llm:peers:changed"

# Publish this replica's state, forget replicas gone silent, announce, read all.
_PUBLISH = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[4]))
for _, id in ipairs(stale) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
redis.call('PUBLISH', KEYS[3], ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""


@dataclass(frozen=True, slots=True)
class PeerView:
    """What the other replicas hold and wait for."""

    # instance name -> model -> requests in flight
    in_flight: dict[str, dict[str, int]]
    # model -> the head of each other replica's queue: (priority class, queued since
    # in wall-clock ms, key name)
    heads: dict[str, list[tuple[int, int, str]]]
    # (model, key name) -> how much the other replicas served that key lately
    served: dict[tuple[str, str], float]
    # How many other replicas there are (they share the slots).
    replicas: int = 0


EMPTY = PeerView({}, {}, {})


def merge(states: dict[str, Any], me: str) -> PeerView:
    """The other replicas' states (`id -> {"in_flight", "served", "heads"}`) as one view."""
    in_flight: dict[str, dict[str, int]] = {}
    heads: dict[str, list[tuple[int, int, str]]] = {}
    served: dict[tuple[str, str], float] = {}
    for replica, state in states.items():
        if replica == me:
            continue
        for where, count in state.get("in_flight", {}).items():
            instance, _, model = where.partition("|")
            per_model = in_flight.setdefault(instance, {})
            per_model[model] = per_model.get(model, 0) + int(count)
        for what, count in state.get("served", {}).items():
            model, _, key = what.partition("|")
            served[(model, key)] = served.get((model, key), 0.0) + float(count)
        for model, (priority, since, key) in state.get("heads", {}).items():
            heads.setdefault(model, []).append((int(priority), int(since), str(key)))
    return PeerView(in_flight, heads, served, sum(1 for replica in states if replica != me))


class PeerSync:
    def __init__(
        self,
        guard: RedisGuard,
        state: Callable[[], dict[str, Any]],
        apply: Callable[[PeerView], None],
        heartbeat: float,
        min_gap: float = 0.005,
        clock: Clock | None = None,
    ) -> None:
        self.replica = os.urandom(6).hex()
        self._clock = clock or SystemClock()
        self._guard = guard
        self._state = state
        self._apply = apply
        self._heartbeat = heartbeat
        self._min_gap = min_gap
        self._dirty = asyncio.Event()
        self._read_soon = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # What was published last: a change that changes nothing is not announced (the
        # others' reads, which change our view, must not make us publish in turn).
        self._published: bytes = b""
        self._stopping = False

    def changed(self) -> None:
        """This replica's in-flight requests or queue heads changed: publish soon."""
        self._dirty.set()

    async def start(self) -> None:
        await self.publish()
        self._tasks = [
            asyncio.create_task(self._publisher(), name="peer-publisher"),
            asyncio.create_task(self._listener(), name="peer-listener"),
            asyncio.create_task(self._reader(), name="peer-reader"),
        ]

    async def stop(self) -> None:
        # Also a flag: on Python 3.11 a cancel that lands as `asyncio.timeout` expires can
        # be taken for the timeout (and swallowed with it); the loops then end anyway.
        self._stopping = True
        self._dirty.set()
        self._read_soon.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client = self._guard.client
        with contextlib.suppress(Exception):  # leave at once rather than after 3 heartbeats
            await client.hdel(STATES, self.replica)
            await client.zrem(SEEN, self.replica)

    async def publish(self, force: bool = True) -> None:
        state = orjson.dumps(self._state())
        if not force and state == self._published:
            return
        self._published = state
        now_ms = int(self._clock.wall() * 1000)
        forget_ms = int(self._heartbeat * 3000)
        result = await self._guard.script(
            "peers",
            _PUBLISH,
            [STATES, SEEN, CHANNEL],
            [self.replica, state, now_ms, forget_ms],
        )
        self._take(result)

    async def read(self) -> None:
        result = await self._guard.execute("peers", "HGETALL", STATES)
        self._take(result)

    def _take(self, result: Any) -> None:
        if isinstance(result, Unavailable) or result is None:
            self._apply(EMPTY)  # alone until Redis answers again
            return
        pairs = result if isinstance(result, list) else list(_flatten(result))
        states = {_text(pairs[i]): orjson.loads(pairs[i + 1]) for i in range(0, len(pairs) - 1, 2)}
        self._apply(merge(states, self.replica))

    async def _publisher(self) -> None:
        while not self._stopping:
            heartbeat = False
            try:
                async with asyncio.timeout(self._heartbeat):
                    await self._dirty.wait()
            except TimeoutError:
                heartbeat = True
            self._dirty.clear()
            await self.publish(force=heartbeat)
            await asyncio.sleep(self._min_gap)  # changes in the meantime go together

    async def _reader(self) -> None:
        while not self._stopping:
            await self._read_soon.wait()
            self._read_soon.clear()
            await self.read()

    async def _listener(self) -> None:
        """Read the others' states whenever one of them announces a change."""
        while not self._stopping:
            pubsub = self._guard.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                while not self._stopping:
                    # A wait longer than the client's socket timeout: get_message waits
                    # for the socket to be readable, then reads.
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self._heartbeat
                    )
                    if message is not None and _text(message["data"]) != self.replica:
                        self._read_soon.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone: the heartbeat keeps trying
                log.debug("peer channel lost: %s", exc)
                await asyncio.sleep(self._heartbeat)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flatten(mapping: dict[Any, Any]) -> Any:
    for key, value in mapping.items():
        yield key
        yield value
