"""What the router believes about each Ollama instance, and how it keeps that true.

Ollama tells little: `/api/ps` lists the loaded models (size, size_vram, expires_at,
context_length) and nothing about running or queued requests (ollama issue 2004).
So each instance's state here is three sources put together:

- the poll of `/api/ps` (every `poll_seconds`): which models are really resident;
- this gateway's own requests: how many it has in flight per model (Ollama takes
  `num_parallel` at once per loaded model, the rest wait inside Ollama, unbounded);
- what its own dispatches imply: a request for a model the instance does not hold
  starts a load there, and may evict idle models (which ones is Ollama's choice, so
  they become `uncertain` until the next poll says).

Health is passive (a refused or reset connection marks the instance down at once)
plus the poll (a successful one marks it up again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from llm_gateway.routing.clock import Clock
from llm_gateway.upstream import Upstream, UpstreamFailure
from llm_gateway.vocabulary import normalize_model

log = logging.getLogger("llm_gateway.routing")

_GB = 1_000_000_000
# server/sched.go ("Use 80% of free memory as threshold to leave headroom").
_FIT_SHARE = 0.8


class State(Enum):
    LOADED = "loaded"
    # This gateway sent the first request since the model was absent: a load is under way.
    LOADING = "loading"
    # Possibly evicted by a load this gateway started; not offered until a poll says.
    UNCERTAIN = "uncertain"


@dataclass(slots=True)
class Residency:
    """One model on one instance, as far as the router knows."""

    model: str
    state: State
    size: int = 0  # bytes, from /api/ps (weights + KV cache); 0 when unknown
    in_flight: int = 0
    # What the other gateway replicas have in flight here (shared through Redis, when on).
    elsewhere: int = 0
    last_used: float = 0.0
    # When each of this gateway's requests in flight here was dispatched (`holds.py`).
    starts: list[float] = field(default_factory=list)
    context_length: int = 0
    expires_at: str = ""

    @property
    def total(self) -> int:
        return self.in_flight + self.elsewhere


@dataclass
class Instance:
    """One Ollama server (one GPU): its address, client, health and residents."""

    name: str  # a label: host:port of its URL
    upstream: Upstream
    num_parallel: int
    max_loaded: int
    vram: int | None  # bytes; None when unknown
    up: bool = False
    # When the last poll of /api/ps that answered was sent (wall-clock seconds).
    polled_at: float = 0.0
    models: dict[str, Residency] = field(default_factory=dict)
    # Set while the router empties this instance for a model loaded nowhere else:
    # nothing new for other models goes here until that model has loaded.
    reserved_for: str | None = None
    # Drained by an admin (`drains.py`): nothing new goes here, what runs finishes.
    draining: bool = False
    # Loads this gateway started here, for metrics: model -> count.
    loads: dict[str, int] = field(default_factory=dict)
    # The last /api/ps entries as Ollama sent them (the gateway's /api/ps joins them).
    ps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return sum(r.in_flight for r in self.models.values())

    @property
    def everywhere(self) -> int:
        """Requests in flight here from every replica (this one's and, when shared, the others')."""
        return sum(r.total for r in self.models.values())

    @property
    def usable(self) -> bool:
        """New requests may be placed here."""
        return self.up and not self.draining

    @property
    def url(self) -> str:
        return self.upstream.base_url

    def resident(self, model: str) -> Residency | None:
        residency = self.models.get(model)
        if residency is None or residency.state is State.UNCERTAIN:
            return None
        return residency

    def free_slot(self, model: str) -> bool:
        residency = self.resident(model)
        return residency is not None and residency.total < self.num_parallel

    def busy(self, residency: Residency) -> bool:
        return residency.total > 0 or residency.state is State.LOADING

    def placement(self, model: str, size: int) -> tuple[bool, list[Residency]] | None:
        """Can `model` (of `size` bytes, 0 unknown) load here without evicting a busy model?

        None: only by evicting a model with work. Else (fits beside the others, the
        idle models Ollama would have to unload for it, in its order of choice).
        """
        others = [r for r in self.models.values() if r.model != model]
        busy = [r for r in others if self.busy(r)]
        idle = sorted((r for r in others if not self.busy(r)), key=lambda r: r.last_used)
        evict: list[Residency] = []
        while not self._fits(size, [*busy, *(r for r in idle if r not in evict)]):
            candidates = [r for r in idle if r not in evict]
            if not candidates:
                return None
            evict.append(candidates[0])
        return not evict, evict

    def evicted_by(self, model: str, size: int) -> list[str]:
        """The models that cannot stay beside `model` here, busy or not: what it
        contends with for this instance (least recently used go first). Models a load
        may have evicted (uncertain) are not counted: they are likely gone."""
        others = sorted(
            (
                r
                for r in self.models.values()
                if r.model != model and r.state is not State.UNCERTAIN
            ),
            key=lambda r: r.last_used,
        )
        evicted: list[str] = []
        while not self._fits(size, others):
            evicted.append(others.pop(0).model)
        return evicted

    def _fits(self, size: int, staying: list[Residency]) -> bool:
        if len(staying) >= self.max_loaded:
            return False
        if self.vram is None or not size:
            return True
        if not staying:
            return True  # alone, Ollama loads it anyway (partly on the CPU if need be)
        free = self.vram - sum(r.size for r in staying)
        # server/sched.go: a model loads beside others only within 80% of free memory.
        return size <= free * _FIT_SHARE

    # -- what this gateway does here ------------------------------------------------

    @property
    def loading(self) -> int:
        """Loads under way here (Ollama loads one model at a time per server)."""
        return sum(1 for r in self.models.values() if r.state is State.LOADING)

    def dispatched(self, model: str, size: int, now: float) -> bool:
        """A request for `model` was sent here; True when it starts a load."""
        residency = self.models.get(model)
        starts_load = residency is None or residency.state is State.UNCERTAIN
        if starts_load:
            placement = self.placement(model, size)
            for victim in placement[1] if placement else ():
                victim.state = State.UNCERTAIN
            residency = self.models[model] = Residency(model, State.LOADING, size=size)
            self.loads[model] = self.loads.get(model, 0) + 1
        assert residency is not None
        residency.in_flight += 1
        residency.starts.append(now)
        residency.last_used = now
        if self.reserved_for == model:
            self.reserved_for = None
        return starts_load

    def answered(self, model: str) -> None:
        """The first byte of an answer came back: the model is loaded."""
        residency = self.models.get(model)
        if residency is not None and residency.state is State.LOADING:
            residency.state = State.LOADED

    def finished(self, model: str, now: float, started: float) -> None:
        """A request of `model` dispatched here at `started` ended."""
        residency = self.models.get(model)
        if residency is not None:
            residency.in_flight = max(0, residency.in_flight - 1)
            with contextlib.suppress(ValueError):
                residency.starts.remove(started)
            residency.last_used = now

    # -- what the other replicas say ------------------------------------------------

    def set_elsewhere(self, counts: dict[str, int]) -> None:
        """The other replicas' requests in flight here, by model (replacing the last)."""
        for residency in self.models.values():
            residency.elsewhere = 0
        for model, count in counts.items():
            known = self.models.get(model)
            if known is None:
                # Another replica started this: a load under way, as far as we can tell.
                known = self.models[model] = Residency(model, State.LOADING)
            known.elsewhere = count

    # -- what Ollama says -----------------------------------------------------------

    def observe(self, ps: list[dict[str, Any]], now: float) -> list[str]:
        """Take in a fresh /api/ps; the models that appeared without this gateway."""
        self.ps = ps
        seen: dict[str, dict[str, Any]] = {}
        for entry in ps:
            name = entry.get("model") or entry.get("name")
            if isinstance(name, str) and name:
                seen[normalize_model(name)] = entry
        appeared = []
        for model, entry in seen.items():
            residency = self.models.get(model)
            if residency is None:
                residency = self.models[model] = Residency(model, State.LOADED, last_used=now)
                appeared.append(model)
            residency.state = State.LOADED
            residency.size = _int(entry.get("size"))
            residency.context_length = _int(entry.get("context_length"))
            residency.expires_at = str(entry.get("expires_at", ""))
        for model, residency in list(self.models.items()):
            if model in seen:
                continue
            if residency.state is State.LOADING and residency.total > 0:
                continue  # Ollama lists a model once its load has finished
            if residency.total > 0 and residency.state is State.LOADED:
                # Between a poll and our answer (reload by another client): keep, but
                # stop offering it until Ollama lists it again.
                residency.state = State.UNCERTAIN
                continue
            del self.models[model]
        self.up = True
        return appeared


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


class InstancePoller:
    """Reads every instance's /api/ps every `interval` seconds, and on demand."""

    def __init__(
        self,
        instances: Iterable[Instance],
        interval: float,
        on_change: Callable[[], None],
        on_load: Callable[[Instance, str], None],
        clock: Clock,
    ) -> None:
        self._clock = clock
        self._instances = list(instances)
        self._interval = interval
        self._on_change = on_change
        self._on_load = on_load
        self._task: asyncio.Task[None] | None = None

    async def poll(self, instance: Instance) -> None:
        sent = self._clock.wall()
        try:
            async with (
                asyncio.timeout(max(self._interval, 2.0)),
                instance.upstream.request("GET", "/api/ps", None, {}) as response,
            ):
                body = await response.read()
            if response.status != 200:
                raise UpstreamFailure("status", response.status, f"/api/ps: {response.status}")
            models = orjson.loads(body).get("models") or []
        except (UpstreamFailure, TimeoutError, orjson.JSONDecodeError, AttributeError) as exc:
            if instance.up:
                log.warning("ollama instance %s is down: %s", instance.name, exc)
            instance.up = False
        else:
            was_up = instance.up
            instance.polled_at = sent
            entries = [m for m in models if isinstance(m, dict)]
            for model in instance.observe(entries, self._clock.now()):
                self._on_load(instance, model)
            if not was_up:
                log.warning("ollama instance %s is up", instance.name)
        self._on_change()

    async def poll_all(self) -> None:
        await asyncio.gather(*(self.poll(instance) for instance in self._instances))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.poll_all()

    async def start(self) -> None:
        await self.poll_all()
        self._task = asyncio.create_task(self._loop(), name="instance-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
