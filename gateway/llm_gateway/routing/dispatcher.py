"""Admission and dispatch with model-aware routing: who goes where, who waits, who is shed.

Every generation request (every flight: coalesced followers never queue) asks for a
slot with `acquire`. It is queued (fair per key, by priority: `fair_queue.py`) and the
queue is pumped at once: whatever can be placed now (`placement.py`) leaves, in fair
order, so an idle stack adds no wait. A request that cannot be placed waits until a
slot frees, a load becomes possible, or its deadline. Each instance takes at most
`num_parallel` requests per loaded model from this gateway; the rest wait here,
where they can be ordered, counted, and shed early, rather than inside Ollama
(where they wait without bound and in arrival order).

Shedding: a full queue, or a request that the estimate says cannot start before its
deadline, is refused at once with 503 and a `Retry-After` from that estimate; a
request whose deadline passes in the queue is refused then. The estimate is the
work ahead of the request over what the model's slots drain per second (measured),
less what higher classes take; with nothing measured yet nobody is shed early.

A model loaded nowhere whose oldest request has waited `load_patience` seconds gets
an instance reserved: nothing new for other models goes there, and once its work
has drained the model loads (evicting what is then idle). That is how a third model
gets a GPU when two busy ones hold both, without the thrash Ollama's own scheduler
would cause by evicting a model with steady traffic.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routing.fair_queue import PRIORITIES, FairQueue, QueueFull, Waiter
from llm_gateway.routing.instances import Instance, InstancePoller, State, now
from llm_gateway.routing.peers import EMPTY as EMPTY_VIEW
from llm_gateway.routing.peers import PeerSync, PeerView
from llm_gateway.routing.placement import Choice, choose
from llm_gateway.upstream import Upstream

# Exponentially weighted averages: how much one new observation counts.
_EWMA = 0.2
# Arrivals a rate is measured over (see _Arrivals).
_RATE_WINDOW = 20
# Loaded size over weights size, until /api/ps says: weights + KV cache + overhead.
_KV_SHARE = 1.15
# A request is admitted when its estimated wait, this much longer, is within its
# deadline: an estimate is an average, and the ones it admits should start in time.
_ADMIT_MARGIN = 1.25
# How often the queue is looked at again for requests that can no longer start in time,
# and how far past its remaining time a waiter's estimate must be to shed it then: only
# the clearly hopeless, the estimate being as noisy as the arrivals.
_CULL_SECONDS = 0.1
_CULL_MARGIN = 2.0
# How fast a key's recent service is forgotten when ranking requests across replicas.
_SERVED_HALF_LIFE = 30.0
# The longest Retry-After the gateway answers with.
_MAX_RETRY_AFTER = 600.0


def _wall_ms(monotonic_at: float) -> int:
    """A monotonic time as wall-clock ms (comparable across processes, roughly)."""
    return int(time.time() * 1000 - (now() - monotonic_at) * 1000)


def _wait_text(seconds: float) -> str:
    """About how long, in words a client log can show ("about 42s", "indefinitely")."""
    return f"about {math.ceil(seconds)}s" if math.isfinite(seconds) else "indefinitely"


class Shed(Exception):
    """The request is refused without waiting (or after its deadline passed)."""

    def __init__(self, reason: str, retry_after: float, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after
        self.message = message


@dataclass(frozen=True, slots=True)
class Ticket:
    """What the dispatcher needs to know about one request."""

    model: str
    key: str
    priority: int  # index into PRIORITIES
    weight: float = 1.0
    deadline_seconds: float = 120.0


@dataclass(slots=True)
class _Arrivals:
    """How often requests of one kind arrive: over their last `_RATE_WINDOW` arrivals.

    Why a window, not an average of the gaps: arrivals come in bursts (Poisson), and
    an exponential average of gaps read three close arrivals as the rate tripling. The
    estimate of a lower class's wait, which subtracts the rate of the classes above
    it, then jumped past deadlines, and requests admitted a moment earlier were shed
    from the queue (bench-system W2: 4 of 25 sheds 100-522 ms after arrival).
    """

    times: deque[float] = field(default_factory=lambda: deque(maxlen=_RATE_WINDOW))
    weight: float = 1.0

    def note(self, at: float) -> None:
        self.times.append(at)

    def rate(self, at: float) -> float:
        """Requests per second; 0 once it has been quiet for ten of its gaps.

        The span runs to `at`, not to the last arrival, so a stream that stops fades
        out instead of keeping its last rate."""
        times = self.times
        gaps = len(times) - 1
        span = at - times[0] if gaps > 0 else 0.0
        if span <= 0:
            return 0.0
        between = (times[-1] - times[0]) / gaps
        if between > 0 and at - times[-1] > 10 * between:
            return 0.0
        return gaps / span


@dataclass(slots=True)
class _ModelStats:
    service: float = 0.0  # seconds a dispatched request holds its slot (EWMA)
    load: float = 0.0  # seconds from a load-starting dispatch to its first byte (EWMA)
    size: int = 0  # bytes resident, from /api/ps
    # Arrivals by class, and by class and key (the fair queue's share of each key).
    classes: list[_Arrivals] = field(default_factory=lambda: [_Arrivals() for _ in PRIORITIES])
    keys: dict[tuple[int, str], _Arrivals] = field(default_factory=dict)


def _ewma(old: float, new: float) -> float:
    return new if old == 0.0 else old + _EWMA * (new - old)


class Grant:
    """A slot on one instance, held from dispatch until `release`."""

    __slots__ = ("_dispatcher", "_released", "dispatched_at", "instance", "key", "loads", "model")

    def __init__(
        self, dispatcher: Dispatcher, instance: Instance, model: str, key: str, loads: bool
    ):
        self._dispatcher = dispatcher
        self.instance = instance
        self.model = model
        self.key = key
        self.loads = loads
        self.dispatched_at = now()
        self._released = False

    @property
    def upstream(self) -> Upstream:
        return self.instance.upstream

    def answered(self) -> None:
        """The instance's first byte arrived (a load it started has finished)."""
        self._dispatcher._answered(self)

    def release(self, failure: str | None = None) -> None:
        """Give the slot back; `failure`: "down" (refused, reset: the instance is
        marked down until its next poll) or "busy" (Ollama answered 503)."""
        if not self._released:
            self._released = True
            self._dispatcher._release(self, failure)


class Dispatcher:
    def __init__(
        self,
        instances: Sequence[Instance],
        queue: FairQueue,
        metrics: GatewayMetrics,
        label: Callable[[str], str],
        poll_seconds: float,
        load_patience: float,
        weights_size: Callable[[str], int] = lambda model: 0,
    ) -> None:
        # Set when replicas share their in-flight counts (`peers.py`).
        self.peers: PeerSync | None = None
        self._peers = EMPTY_VIEW
        # Recent service per (model, key name): dispatches (over the key's weight),
        # halving every _SERVED_HALF_LIFE seconds; for fairness across replicas.
        self._served: dict[tuple[str, str], tuple[float, float]] = {}
        self._published_served: dict[tuple[str, str], float] = {}
        self.instances = list(instances)
        self.queue = queue
        self._metrics = metrics
        self._label = label
        # Bytes of a model's weights (from /api/tags), before /api/ps tells its real size.
        self._weights_size = weights_size
        self._load_patience = load_patience
        self._stats: dict[str, _ModelStats] = {}
        self.poller = InstancePoller(
            self.instances, poll_seconds, self.pump, self._loaded_elsewhere
        )
        self._patience_timer: asyncio.TimerHandle | None = None
        self._series: set[tuple[str, str]] = set()
        self._next_cull = 0.0

    async def start(self) -> None:
        await self.poller.start()
        if self.peers is not None:
            await self.peers.start()

    async def stop(self) -> None:
        await self.poller.stop()
        if self.peers is not None:
            await self.peers.stop()
        if self._patience_timer is not None:
            self._patience_timer.cancel()
        for waiter in list(self.queue.waiters()):
            self._leave(waiter)
            if not waiter.future.done():
                priority = PRIORITIES[waiter.priority]
                shed = self._shed("shutdown", priority, 5, "the gateway is shutting down")
                waiter.future.set_exception(shed)

    def size(self, model: str) -> int:
        """Bytes `model` takes when loaded: as /api/ps last said, else a guess from its
        weights (the KV cache adds about a tenth to a fifth at common context lengths)."""
        return self.stats(model).size or int(self._weights_size(model) * _KV_SHARE)

    def stats(self, model: str) -> _ModelStats:
        stats = self._stats.get(model)
        if stats is None:
            stats = self._stats[model] = _ModelStats()
        return stats

    def any_upstream(self) -> Upstream:
        """An instance for requests any of them can answer (/api/tags, /api/show ...)."""
        up = [i for i in self.instances if i.up] or self.instances
        return min(up, key=lambda i: (i.in_flight, i.name)).upstream

    # -- acquiring a slot ---------------------------------------------------------

    async def acquire(self, ticket: Ticket, exclude: frozenset[str] = frozenset()) -> Grant:
        loop = asyncio.get_running_loop()
        arrived = now()
        self._note_arrival(ticket, arrived)
        waiter = Waiter(
            model=ticket.model,
            key=ticket.key,
            priority=ticket.priority,
            weight=ticket.weight,
            enqueued_at=arrived,
            deadline=arrived + ticket.deadline_seconds,
            future=loop.create_future(),
            exclude=exclude,
        )
        priority = PRIORITIES[ticket.priority]
        try:
            self.queue.push(waiter)
        except QueueFull:
            retry = self.estimate_wait(waiter) or 1.0
            raise self._shed(
                "queue_full", priority, retry,
                f"server busy: {self.queue.max_depth} requests are already waiting",
            ) from None  # fmt: skip
        self._gauge(waiter, +1)
        self.pump()
        if not waiter.future.done():
            estimate = self.estimate_wait(waiter)
            if estimate is not None and estimate * _ADMIT_MARGIN > ticket.deadline_seconds:
                self._leave(waiter)
                raise self._shed(
                    "overloaded", priority, estimate,
                    f"server busy: this request would wait {_wait_text(estimate)} for a slot, "
                    f"longer than its deadline ({ticket.deadline_seconds:g}s)",
                )  # fmt: skip
            self._arm_patience()
        try:
            async with asyncio.timeout_at(loop.time() + ticket.deadline_seconds):
                grant: Grant = await waiter.future
        except TimeoutError:
            self._leave(waiter)
            retry = self.estimate_wait(waiter) or ticket.deadline_seconds
            raise self._shed(
                "deadline", priority, retry,
                f"server busy: no slot for this request within {ticket.deadline_seconds:g}s",
            ) from None  # fmt: skip
        except asyncio.CancelledError:
            self._leave(waiter)  # the client went away while queued
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().release()  # dispatched in the same instant
            raise
        return grant

    def _leave(self, waiter: Waiter) -> None:
        if waiter.active:
            self.queue.remove(waiter)
            self._gauge(waiter, -1)

    def _shed(self, reason: str, priority: str, retry_after: float, message: str) -> Shed:
        self._metrics.shed.labels(reason, priority).inc()
        # An estimate can be unbounded (higher classes arrive faster than slots drain).
        return Shed(reason, min(max(1.0, retry_after), _MAX_RETRY_AFTER), message)

    def _gauge(self, waiter: Waiter, change: int) -> None:
        self._metrics.queue_depth.labels(
            self._label(waiter.model), PRIORITIES[waiter.priority]
        ).inc(change)

    def _note_arrival(self, ticket: Ticket, at: float) -> None:
        stats = self.stats(ticket.model)
        stats.classes[ticket.priority].note(at)
        per_key = stats.keys.get((ticket.priority, ticket.key))
        if per_key is None:
            per_key = stats.keys[(ticket.priority, ticket.key)] = _Arrivals()
        per_key.weight = ticket.weight
        per_key.note(at)

    # -- dispatching --------------------------------------------------------------

    def pump(self) -> None:
        """Dispatch, in fair order, every waiter that can be placed now."""
        while True:
            placeable: list[tuple[Waiter, Choice]] = []
            for model in self.queue.models():
                waiter = self.queue.best([model])
                if waiter is None or self._yields_to_peer(waiter):
                    continue
                choice = choose(
                    self.instances, model, self.size(model),
                    replicate=self._wants_copy(model), exclude=waiter.exclude,
                )  # fmt: skip
                if choice is not None:
                    placeable.append((waiter, choice))
            if not placeable:
                break
            waiter, choice = min(placeable, key=lambda pair: pair[0].order)
            self._dispatch(waiter, choice)
        self._cull()
        self._update_gauges()
        if self.peers is not None:
            self.peers.changed()

    # -- other replicas -----------------------------------------------------------------

    def peer_state(self) -> dict[str, Any]:
        """What this replica has in flight and waiting, for the others (`peers.py`)."""
        in_flight = {
            f"{instance.name}|{r.model}": r.in_flight
            for instance in self.instances
            for r in instance.models.values()
            if r.in_flight
        }
        t = now()
        self._published_served = {
            (model, key): round(value, 3)
            for (model, key) in list(self._served)
            if (value := self._recent(model, key, t)) > 0.01
        }
        served = {f"{model}|{key}": value for (model, key), value in self._published_served.items()}
        heads: dict[str, list[Any]] = {}
        for model in self.queue.models():
            head = self.queue.best([model])
            if head is not None:
                heads[model] = [head.priority, _wall_ms(head.enqueued_at), head.key]
        return {"in_flight": in_flight, "served": served, "heads": heads}

    def apply_peers(self, view: PeerView) -> None:
        for instance in self.instances:
            instance.set_elsewhere(view.in_flight.get(instance.name, {}))
        self._peers = view
        self.pump()

    def _recent(self, model: str, key: str, t: float) -> float:
        value, at = self._served.get((model, key), (0.0, t))
        decay: float = 0.5 ** ((t - at) / _SERVED_HALF_LIFE)
        return value * decay

    def _rank(self, model: str, priority: int, key: str, since_ms: int) -> tuple[int, float, int]:
        """Who goes first across replicas: class, then the key served least lately (on
        every replica, weighted), then the longer wait. From the published figures only,
        this replica's own included: every replica then ranks the same heads the same
        way, so exactly one of them takes a freed slot."""
        pair = (model, key)
        served = self._published_served.get(pair, 0.0) + self._peers.served.get(pair, 0.0)
        return (priority, served, since_ms)

    def _yields_to_peer(self, waiter: Waiter) -> bool:
        """Another replica waits with a request that ranks before this one: it goes first."""
        heads = self._peers.heads.get(waiter.model)
        if not heads or self.peers is None:
            return False
        model = waiter.model
        mine = self._rank(model, waiter.priority, waiter.key, _wall_ms(waiter.enqueued_at))
        return any(self._rank(model, priority, key, since) < mine for priority, since, key in heads)

    def _wants_copy(self, model: str) -> bool:
        """A second copy of a loaded model pays off when a slot's worth of work waits."""
        slots = sum(i.num_parallel for i in self.instances if i.up and i.resident(model))
        return self.queue.depth(model) > max(1, slots)

    def _dispatch(self, waiter: Waiter, choice: Choice) -> None:
        self.queue.take(waiter)
        self._gauge(waiter, -1)
        instance, model = choice.instance, waiter.model
        loads = instance.dispatched(model, self.size(model), now())
        if loads:
            self._metrics.model_loads.labels(instance.name, self._label(model)).inc()
        self._metrics.queue_wait.labels(self._label(model), PRIORITIES[waiter.priority]).observe(
            now() - waiter.enqueued_at
        )
        grant = Grant(self, instance, model, waiter.key, loads)
        t = now()
        recent = self._recent(model, waiter.key, t) + 1.0 / waiter.weight
        self._served[(model, waiter.key)] = (recent, t)
        if waiter.future.done():  # cancelled in this very instant
            grant.release()
            return
        waiter.future.set_result(grant)

    def _answered(self, grant: Grant) -> None:
        grant.instance.answered(grant.model)
        if grant.loads:
            stats = self.stats(grant.model)
            stats.load = _ewma(stats.load, now() - grant.dispatched_at)

    def _release(self, grant: Grant, failure: str | None) -> None:
        instance, model = grant.instance, grant.model
        instance.finished(model, now())
        if failure == "down":
            instance.up = False  # passive health: the poll brings it back
        if failure is not None:
            residency = instance.models.get(model)
            if grant.loads and residency is not None and residency.in_flight == 0:
                del instance.models[model]
        else:
            stats = self.stats(model)
            stats.service = _ewma(stats.service, now() - grant.dispatched_at)
        self.pump()

    def _loaded_elsewhere(self, instance: Instance, model: str) -> None:
        """A model appeared in /api/ps without this gateway loading it (another replica)."""
        self._metrics.model_loads.labels(instance.name, self._label(model)).inc()

    def _update_gauges(self) -> None:
        metrics = self._metrics
        series: dict[tuple[str, str], tuple[int, int]] = {}
        for instance in self.instances:
            metrics.instance_up.labels(instance.name).set(1 if instance.up else 0)
            for residency in instance.models.values():
                shape = (instance.name, self._label(residency.model))
                flying, loaded = series.get(shape, (0, 0))
                resident = int(residency.state is State.LOADED)
                series[shape] = (flying + residency.in_flight, max(loaded, resident))
                if residency.size:
                    self.stats(residency.model).size = residency.size
        # Series of models no longer there go to 0 rather than keep their last value.
        for shape in self._series - series.keys():
            series[shape] = (0, 0)
        for (instance_name, label), (flying, loaded) in series.items():
            metrics.instance_in_flight.labels(instance_name, label).set(flying)
            metrics.instance_model_loaded.labels(instance_name, label).set(loaded)
        self._series = set(series)

    # -- patience -------------------------------------------------------------------

    def _arm_patience(self) -> None:
        if self._patience_timer is None or self._patience_timer.cancelled():
            loop = asyncio.get_running_loop()
            self._patience_timer = loop.call_later(
                max(self._load_patience / 4, 0.05), self._check_patience
            )

    def _check_patience(self) -> None:
        self._patience_timer = None
        t = now()
        waiting = False
        for model in self.queue.models():
            waiting = True
            if any(i.resident(model) for i in self.instances if i.up):
                continue
            if any(i.reserved_for == model for i in self.instances):
                continue
            oldest = self.queue.oldest(model)
            if oldest is None or t - oldest < self._load_patience:
                continue
            victim = self._reservable()
            if victim is not None:
                victim.reserved_for = model
        self.pump()
        if waiting:
            self._arm_patience()

    def _reservable(self) -> Instance | None:
        """The instance whose current work is least wanted: the fewest requests waiting
        for its models, then the fewest in flight."""
        options = [i for i in self.instances if i.up and i.reserved_for is None]
        if not options:
            return None

        def demand(instance: Instance) -> tuple[int, int, str]:
            queued = sum(self.queue.depth(model) for model in instance.models)
            return (queued, instance.in_flight, instance.name)

        return min(options, key=demand)

    # -- estimates --------------------------------------------------------------------

    def estimate_wait(self, waiter: Waiter) -> float | None:
        """Seconds until `waiter` would start, as things stand; None: cannot tell yet."""
        ahead = own = 0
        for other in self.queue.waiters():
            if other is waiter or other.model != waiter.model or other.order >= waiter.order:
                continue
            ahead += 1
            own += other.key == waiter.key and other.priority == waiter.priority
        return self._estimate(waiter, ahead, own)

    def _estimate(self, waiter: Waiter, ahead: int, own: int) -> float | None:
        """Seconds until `waiter` starts, with `ahead` requests before it in the queue,
        `own` of them its own key's (same class), the larger of two views:

        - position: the work ahead over what the model's slots drain per second (this
          replica's share of them when replicas share slots), less what higher classes
          take as they keep arriving;
        - fair share: the key's own backlog over what the other keys of its class leave
          it, each of them taking what it sends up to its weighted share. Their future
          requests go before a flooding key's backlog, which position alone misses.
        """
        model, priority = waiter.model, waiter.priority
        stats = self.stats(model)
        if not stats.service:
            return None
        slots = sum(i.num_parallel for i in self.instances if i.up and i.resident(model))
        extra = 0.0
        if slots == 0:
            if not stats.load:
                return None
            slots = self.instances[0].num_parallel if self.instances else 1
            extra = stats.load
        t = now()
        rate = slots / stats.service / self._replicas()
        rate -= sum(stats.classes[higher].rate(t) for higher in range(priority))
        if rate <= 0:
            return math.inf
        position = ahead / rate
        rivals = [
            arrivals
            for (cls, key), arrivals in stats.keys.items()
            if cls == priority and key != waiter.key and arrivals.rate(t) > 0
        ]
        weights = waiter.weight + sum(a.weight for a in rivals)
        taken = sum(min(a.rate(t), rate * a.weight / weights) for a in rivals)
        left = rate - taken
        fair = (own + 1) / left if left > 0 else math.inf
        return extra + max(position, fair)

    def _replicas(self) -> int:
        """Replicas sharing the slots (1 when alone or not sharing)."""
        return 1 + self._peers.replicas if self.peers is not None else 1

    def _cull(self) -> None:
        """Shed, as soon as it shows, every waiter that clearly cannot start in time.

        A request admitted on one estimate can be overtaken later (an interactive request,
        a key with less recent work), so the queue is looked at again: a request is told
        at the moment it cannot make its deadline, not when the deadline has passed.
        """
        t = now()
        if t < self._next_cull or not len(self.queue):
            return
        self._next_cull = t + _CULL_SECONDS
        for model in self.queue.models():
            ordered = sorted(
                (w for w in self.queue.waiters() if w.model == model), key=lambda w: w.order
            )
            own_seen: dict[tuple[int, str], int] = {}
            for position, waiter in enumerate(ordered):
                mine = (waiter.priority, waiter.key)
                own = own_seen.get(mine, 0)
                own_seen[mine] = own + 1
                estimate = self._estimate(waiter, position, own)
                if estimate is None or estimate <= _CULL_MARGIN * (waiter.deadline - t):
                    continue
                self._leave(waiter)
                if not waiter.future.done():
                    waiter.future.set_exception(
                        self._shed(
                            "overloaded", PRIORITIES[waiter.priority], estimate,
                            f"server busy: this request would wait {_wait_text(estimate)} "
                            "more for a slot, past its deadline",
                        )
                    )  # fmt: skip

    # -- what an admin may see ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        t = now()
        queues: dict[str, dict[str, Any]] = {}
        for model in self.queue.models():
            oldest = self.queue.oldest(model)
            stats = self.stats(model)
            queues[model] = {
                "depth": {p: self.queue.depth(model, i) for i, p in enumerate(PRIORITIES)},
                "oldest_wait_seconds": round(t - oldest, 3) if oldest is not None else 0,
                "service_seconds": round(stats.service, 3),
                "load_seconds": round(stats.load, 3),
            }
        return {
            "routing": "model-aware",
            "queued": len(self.queue),
            "max_depth": self.queue.max_depth,
            "queues": queues,
            "instances": [
                {
                    "name": i.name,
                    "up": i.up,
                    "in_flight": i.in_flight,
                    "reserved_for": i.reserved_for,
                    "models": {
                        r.model: {
                            "state": r.state.value,
                            "in_flight": r.in_flight,
                            "size": r.size,
                            "context_length": r.context_length,
                            "expires_at": r.expires_at,
                        }
                        for r in i.models.values()
                    },
                    "loads_started": dict(i.loads),
                }
                for i in self.instances
            ],
        }


def joined_ps(dispatcher: Dispatcher) -> bytes:
    """/api/ps for the whole pool: every instance's models, as each last reported them
    (a model loaded on two instances is listed twice: it holds two GPUs)."""
    models = [entry for instance in dispatcher.instances if instance.up for entry in instance.ps]
    return orjson.dumps({"models": models})
