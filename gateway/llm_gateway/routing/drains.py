"""Draining Ollama instances: an admin's "send nothing new there", held by every replica.

A drained instance takes no new request (`Instance.usable` is false, so placement
passes it over and queued requests go elsewhere or wait); what runs there finishes.
Its state, for `GET /admin/instances`: `draining` while requests are in flight there
(from any replica, when replicas share their counts), `drained` once none are, `down`
when it does not answer (whatever its drain), `healthy` otherwise.

A drain ends one of two ways, chosen when it is made:

- `until=undrain` (the default): only an explicit undrain ends it;
- `until=ready`: it ends by itself once the instance, having been seen down by any
  replica, answers a poll again (a poll that started after it was seen down, so a
  replica that has not yet noticed the stop cannot end it early). That is a
  rollout's shape: drain, wait until drained, stop the old container, start the new
  one; the gateway re-admits it when it answers. A restart faster than a poll
  (`GATEWAY_POLL_SECONDS`) may go unseen: undrain explicitly then.

Sharing: the drains live in one Redis hash (`llm:drains`, instance name -> JSON), and
every change is announced on `llm:drains:changed`; each replica and worker reads the
hash on an announcement and every `interval` seconds. A change made here applies here
at once and is written to Redis as soon as Redis answers: without Redis a replica still
honours the drains it received itself, and keeps those it last read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

from llm_gateway.redis_guard import RedisGuard, Unavailable
from llm_gateway.routing.clock import Clock
from llm_gateway.routing.instances import Instance

log = logging.getLogger("llm_gateway.routing")

DRAINS = "llm:drains"  # hash: instance name -> JSON of its Drain
CHANNEL = "llm:drains:changed"

Until = Literal["undrain", "ready"]
UNTIL: tuple[Until, ...] = ("undrain", "ready")

# Every change is announced, so that the others read the drains at once.
_SET = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
"""
_DELETE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
"""
# An until=ready drain whose instance was seen down: note it (if the drain still exists).
_SEEN_DOWN = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local d = cjson.decode(v)
if d['until'] ~= 'ready' or (tonumber(d['down_at']) or 0) > 0 then return 0 end
d['down_at'] = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(d))
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
"""
# ... and it answers again: the drain ends (only if it is that same drain).
_SEEN_READY = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local d = cjson.decode(v)
if d['until'] ~= 'ready' or (tonumber(d['down_at']) or 0) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
"""

_SCRIPTS = {"set": _SET, "del": _DELETE, "down": _SEEN_DOWN, "ready": _SEEN_READY}


@dataclass(frozen=True, slots=True)
class Drain:
    since: float  # wall-clock seconds
    until: Until = "undrain"
    down_at: float = 0.0  # (until=ready) when it was first seen down since; 0: not yet

    def to_json(self) -> dict[str, Any]:
        return {"since": round(self.since, 3), "until": self.until, "down_at": self.down_at}

    @classmethod
    def from_json(cls, value: Any) -> Drain | None:
        try:
            data = orjson.loads(value)
            until = data.get("until", "undrain")
            if until not in UNTIL:
                return None
            return cls(float(data["since"]), until, float(data.get("down_at") or 0.0))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None


def state(instance: Instance, drain: Drain | None) -> str:
    """healthy, draining, drained or down (see the module docstring)."""
    if not instance.up:
        return "down"
    if drain is None:
        return "healthy"
    return "draining" if instance.everywhere else "drained"


class Drains:
    """The drains this replica honours, kept in step with the other replicas'."""

    def __init__(self, clock: Clock, guard: RedisGuard | None = None, interval: float = 1.0):
        self._clock = clock
        self._guard = guard
        self._interval = interval
        self._view: dict[str, Drain] = {}
        # Changes made here, in order, not yet written to Redis: (operation, name, JSON).
        self._unsent: list[tuple[str, str, bytes]] = []
        self._on_change: Callable[[], None] = lambda: None
        self._tasks: list[asyncio.Task[None]] = []
        self._read_soon = asyncio.Event()
        self._writing = asyncio.Lock()  # one writer: the unsent list is popped in order
        self._stopping = False

    def listen(self, on_change: Callable[[], None]) -> None:
        """Call `on_change` whenever the drains change (here or from another replica)."""
        self._on_change = on_change

    def get(self, name: str) -> Drain | None:
        return self._view.get(name)

    def all(self) -> dict[str, Drain]:
        return dict(self._view)

    @property
    def shared(self) -> bool:
        """Every change made here is in Redis (the other replicas can see it)."""
        return self._guard is not None and not self._unsent

    # -- changes ------------------------------------------------------------------

    async def drain(self, name: str, until: Until = "undrain") -> bool:
        """Drain `name`; True when the other replicas will know (it reached Redis)."""
        drain = Drain(self._clock.wall(), until)
        self._change(name, drain, ("set", name, orjson.dumps(drain.to_json())))
        log.info("draining ollama instance %s (until %s)", name, until)
        return await self.flush()

    async def undrain(self, name: str) -> bool:
        self._change(name, None, ("del", name, b""))
        log.info("undrained ollama instance %s", name)
        return await self.flush()

    def watch(self, instances: Iterable[Instance]) -> None:
        """End an until=ready drain whose instance answers again after being down."""
        for instance in instances:
            drain = self._view.get(instance.name)
            if drain is None or drain.until != "ready":
                continue
            if not instance.up and not drain.down_at:
                at = self._clock.wall()
                seen = replace(drain, down_at=at)
                self._change(instance.name, seen, ("down", instance.name, b"%f" % at), False)
                self._flush_soon()
            elif instance.up and drain.down_at and instance.polled_at > drain.down_at:
                self._change(instance.name, None, ("ready", instance.name, b""), notify=False)
                instance.draining = False
                log.info("undrained ollama instance %s: it answers again", instance.name)
                self._flush_soon()

    def apply(self, instances: Iterable[Instance]) -> None:
        """Set each instance's `draining` from the drains."""
        for instance in instances:
            instance.draining = instance.name in self._view
            if instance.draining:
                instance.reserved_for = None  # a reservation moves to an instance that stays

    def _change(
        self, name: str, drain: Drain | None, op: tuple[str, str, bytes], notify: bool = True
    ) -> None:
        if drain is None:
            self._view.pop(name, None)
        else:
            self._view[name] = drain
        if self._guard is not None:
            self._unsent.append(op)
        if notify:
            self._on_change()

    # -- Redis --------------------------------------------------------------------

    async def flush(self) -> bool:
        """Write the changes made here, oldest first; True when none is left."""
        guard = self._guard
        if guard is None:
            return False
        async with self._writing:
            while self._unsent:
                op, name, payload = self._unsent[0]
                args = [name, payload] if payload else [name]
                result = await guard.script("drains", _SCRIPTS[op], [DRAINS, CHANNEL], args)
                if isinstance(result, Unavailable):
                    return False
                self._unsent.pop(0)
        return True

    def _flush_soon(self) -> None:
        if self._guard is not None:
            self._read_soon.set()

    async def sync(self) -> None:
        """Write what is unsent, then take the shared drains (if all was written)."""
        if self._guard is None or not await self.flush():
            return
        result = await self._guard.run("drains", self._read)
        if isinstance(result, Unavailable) or self._unsent:
            return  # keep the drains last known
        view = {}
        for key, value in result.items():
            drain = Drain.from_json(value)
            if drain is not None:
                view[key.decode() if isinstance(key, bytes) else str(key)] = drain
        if view != self._view:
            self._view = view
            self._on_change()

    async def _read(self) -> dict[Any, Any]:
        assert self._guard is not None
        result: dict[Any, Any] = await self._guard.client.hgetall(DRAINS)
        return result

    async def start(self) -> None:
        if self._guard is None:
            return
        self._stopping = False
        await self.sync()
        self._tasks = [
            asyncio.create_task(self._syncer(), name="drain-sync"),
            asyncio.create_task(self._listener(), name="drain-listener"),
        ]

    async def stop(self) -> None:
        # Also a flag: on Python 3.11 a cancel that lands as `asyncio.timeout` expires can
        # be taken for the timeout (and swallowed with it); the loops then end anyway.
        self._stopping = True
        self._read_soon.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _syncer(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._read_soon.wait()
            self._read_soon.clear()
            await self.sync()

    async def _listener(self) -> None:
        """Read the drains whenever a replica announces a change."""
        assert self._guard is not None
        while not self._stopping:
            pubsub = self._guard.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                while not self._stopping:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self._interval
                    )
                    if message is not None:
                        self._read_soon.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone: the periodic sync keeps trying
                log.debug("drain channel lost: %s", exc)
                await asyncio.sleep(self._interval)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
