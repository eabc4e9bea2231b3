"""How long a queued request will wait: pure functions of (stats, queue view, now).

The dispatcher measures, per model, what a request costs (`ModelStats`: seconds a
slot is held, seconds a load takes, arrivals per class and per key) and asks here:

- `wait_estimate`: seconds until a request starts, given its place in line and the
  slots that serve its model;
- `admits`: whether a request with that estimate is worth queueing at all;
- `overtaken`: the queued requests that can clearly no longer start in time (the cull);
- `contended`: the share of its slots a model really gets when a model with demand
  is loaded nowhere and can only load by evicting it (an instance lost, or more big
  models than GPUs): the instance's time goes back and forth between them.

Nothing here reads a clock or touches the queue: `now` and the waiters are passed in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from llm_gateway.routing.fair_queue import Waiter
from llm_gateway.routing.instances import Instance
from llm_gateway.vocabulary import PRIORITIES

# Loaded size over weights size, until /api/ps says: weights + KV cache + overhead.
KV_SHARE = 1.15
# Exponentially weighted averages: how much one new observation counts.
EWMA = 0.2
# Arrivals a rate is measured over (see Arrivals).
RATE_WINDOW = 20
# A request is admitted when its estimated wait, this much longer, is within its
# deadline: an estimate is an average, and the ones it admits should start in time.
ADMIT_MARGIN = 1.25
# How far past its remaining time a waiter's estimate must be to shed it from the
# queue: only the clearly hopeless, the estimate being as noisy as the arrivals.
CULL_MARGIN = 2.0


@dataclass(slots=True)
class Arrivals:
    """How often requests of one kind arrive: over their last `RATE_WINDOW` arrivals.

    Why a window, not an average of the gaps: arrivals come in bursts (Poisson), and
    an exponential average of gaps read three close arrivals as the rate tripling. The
    estimate of a lower class's wait, which subtracts the rate of the classes above
    it, then jumped past deadlines, and requests admitted a moment earlier were shed
    from the queue (bench-system W2: 4 of 25 sheds 100-522 ms after arrival).
    """

    times: deque[float] = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))
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
class ModelStats:
    """What the dispatcher has measured about one model."""

    service: float = 0.0  # seconds a dispatched request holds its slot (EWMA)
    load: float = 0.0  # seconds from a load-starting dispatch to its first byte (EWMA)
    size: int = 0  # bytes resident, from /api/ps
    # Arrivals by class, and by class and key (the fair queue's share of each key).
    classes: list[Arrivals] = field(default_factory=lambda: [Arrivals() for _ in PRIORITIES])
    keys: dict[tuple[int, str], Arrivals] = field(default_factory=dict)

    def note_arrival(self, priority: int, key: str, weight: float, at: float) -> None:
        self.classes[priority].note(at)
        per_key = self.keys.get((priority, key))
        if per_key is None:
            per_key = self.keys[(priority, key)] = Arrivals()
        per_key.weight = weight
        per_key.note(at)

    def note_service(self, seconds: float) -> None:
        self.service = ewma(self.service, seconds)

    def note_load(self, seconds: float) -> None:
        self.load = ewma(self.load, seconds)


class Measurements:
    """`ModelStats` for every model asked for, and what each model takes when loaded."""

    def __init__(self, weights_size: Callable[[str], int] = lambda model: 0) -> None:
        # Bytes of a model's weights (from /api/tags), before /api/ps tells its real size.
        self._weights_size = weights_size
        self.models: dict[str, ModelStats] = {}

    def __getitem__(self, model: str) -> ModelStats:
        stats = self.models.get(model)
        if stats is None:
            stats = self.models[model] = ModelStats()
        return stats

    def size(self, model: str) -> int:
        """Bytes `model` takes when loaded: as /api/ps last said, else a guess from its
        weights (the KV cache adds about a tenth to a fifth at common context lengths)."""
        return self[model].size or int(self._weights_size(model) * KV_SHARE)

    def learn_sizes(self, instances: Iterable[Instance]) -> None:
        for instance in instances:
            for residency in instance.models.values():
                if residency.size:
                    self[residency.model].size = residency.size


def ewma(old: float, new: float) -> float:
    return new if old == 0.0 else old + EWMA * (new - old)


@dataclass(frozen=True, slots=True)
class Capacity:
    """The slots that serve one model now."""

    slots: float  # on the instances that hold it (usable, resident), times its share
    cold_slots: float  # what one instance would give it once loaded (when held nowhere)
    replicas: int = 1  # gateway replicas sharing those slots
    # Seconds before a model held nowhere can even start loading (its load patience).
    delay: float = 0.0

    @classmethod
    def of(cls, instances: Sequence[Instance], model: str, replicas: int = 1) -> Capacity:
        slots = sum(i.num_parallel for i in instances if i.usable and i.resident(model))
        return cls(slots, instances[0].num_parallel if instances else 1, replicas)


def place_in_line(waiters: Iterable[Waiter], waiter: Waiter) -> tuple[int, int]:
    """(requests for its model before `waiter`, how many of them its own key's, same class)."""
    ahead = own = 0
    for other in waiters:
        if other is waiter or other.model != waiter.model or other.order >= waiter.order:
            continue
        ahead += 1
        own += other.key == waiter.key and other.priority == waiter.priority
    return ahead, own


def wait_estimate(
    stats: ModelStats, capacity: Capacity, waiter: Waiter, ahead: int, own: int, now: float
) -> float | None:
    """Seconds until `waiter` starts, with `ahead` requests before it in the queue,
    `own` of them its own key's (same class); None: nothing measured yet. The larger
    of two views:

    - position: the work ahead over what the model's slots drain per second (this
      replica's share of them when replicas share slots), less what higher classes
      take as they keep arriving;
    - fair share: the key's own backlog over what the other keys of its class leave
      it, each of them taking what it sends up to its weighted share. Their future
      requests go before a flooding key's backlog, which position alone misses.
    """
    if not stats.service:
        return None
    slots, extra = capacity.slots, capacity.delay
    if slots == 0:
        if not stats.load:
            return None
        slots, extra = capacity.cold_slots, stats.load + capacity.delay
    priority = waiter.priority
    rate = slots / stats.service / capacity.replicas
    rate -= sum(stats.classes[higher].rate(now) for higher in range(priority))
    if rate <= 0:
        return math.inf
    position = ahead / rate
    rivals = [
        arrivals
        for (cls, key), arrivals in stats.keys.items()
        if cls == priority and key != waiter.key and arrivals.rate(now) > 0
    ]
    weights = waiter.weight + sum(a.weight for a in rivals)
    taken = sum(min(a.rate(now), rate * a.weight / weights) for a in rivals)
    left = rate - taken
    fair = (own + 1) / left if left > 0 else math.inf
    return extra + max(position, fair)


def demand(stats: ModelStats, now: float) -> float:
    """Slots a model keeps busy: its arrivals per second times the seconds each holds one."""
    return sum(arrivals.rate(now) for arrivals in stats.classes) * stats.service


def contended(
    capacity: Capacity,
    model: str,
    instances: Sequence[Instance],
    demands: Mapping[str, float],
    sizes: Callable[[str], int],
    patience: float,
    load: float = 0.0,
) -> Capacity:
    """`capacity` as it really is when models with demand are loaded nowhere and can only
    load by evicting others (`demands`: `demand` of every model asked for).

    Such a model (homeless) takes the usable instance where it would evict the least
    demand, after its load patience; from then on that instance's time goes to it and
    to the models it evicts by turns, as each one's queue grows. Each of them gets the
    instance's slots in proportion to its demand: the homeless model's cold slots, and
    a resident model's slots on that instance, are scaled by that share. Without it,
    the estimate of a model held nowhere counted on a whole idle instance, and a model
    it displaced on keeping its own: after an instance was lost, requests were admitted
    that waited most of their deadline, then were shed.

    Each turn begins with a load (`load`: seconds this model's take) and lasts about
    the load patience (the other model's oldest request waits that long before the
    instance is reserved for it again): of its share, a model uses
    patience / (patience + load).
    """
    usable = [i for i in instances if i.usable]
    # instance name -> (homeless models taking it, models they evict there)
    pressure: dict[str, tuple[list[str], set[str]]] = {}
    for other, wanted in sorted(demands.items()):
        if wanted <= 0 or any(i.resident(other) for i in usable):
            continue
        options = [
            (sum(demands.get(m, 0.0) for m in evicted), i.name, evicted)
            for i in usable
            if i.reserved_for in (None, other)
            for evicted in [i.evicted_by(other, sizes(other))]
        ]
        if not options or min(options)[0] <= 0:
            continue  # it loads beside the others, or evicts only idle models
        _, name, evicted = min(options)
        homeless, rivals = pressure.setdefault(name, ([], set()))
        homeless.append(other)
        rivals.update(evicted)
    if not pressure:
        return capacity

    turns = patience / (patience + load) if patience > 0 else 1.0

    def share(name: str, homeless: list[str], rivals: set[str]) -> float:
        total = sum(demands.get(m, 0.0) for m in (*homeless, *rivals))
        return turns * demands.get(model, 0.0) / total if total > 0 else 1.0

    for name, (homeless, rivals) in sorted(pressure.items()):
        if model in homeless:
            reserved = any(i.reserved_for == model for i in usable)
            mine = share(name, homeless, rivals)
            return replace(
                capacity,
                cold_slots=capacity.cold_slots * mine,
                delay=0.0 if reserved else patience,
            )
    slots, turning = 0.0, False
    for instance in usable:
        if not instance.resident(model):
            continue
        pressed = pressure.get(instance.name)
        mine = share(instance.name, *pressed) if pressed and model in pressed[1] else 1.0
        turning = turning or mine < 1.0
        slots += instance.num_parallel * mine
    if not slots:
        return capacity
    # A model that takes turns waits out the other's turn (about the patience) and its
    # own reload before its queue moves again.
    return replace(capacity, slots=slots, delay=patience + load if turning else 0.0)


def admits(estimate: float | None, deadline_seconds: float) -> bool:
    """Queue a request with this estimate? (None: nothing measured, nobody is refused.)"""
    return estimate is None or estimate * ADMIT_MARGIN <= deadline_seconds


def overtaken(
    waiters: Iterable[Waiter],
    estimate: Callable[[Waiter, int, int], float | None],
    now: float,
) -> list[tuple[Waiter, float]]:
    """The waiters that clearly cannot start before their deadline, with their estimate.

    A request admitted on one estimate can be overtaken later (an interactive request,
    a key with less recent work), so the queue is looked at again: a request is told
    at the moment it cannot make its deadline, not when the deadline has passed.
    `estimate(waiter, ahead, own)` is `wait_estimate` with the model's stats bound.
    """
    by_model: dict[str, list[Waiter]] = {}
    for waiter in waiters:
        by_model.setdefault(waiter.model, []).append(waiter)
    hopeless: list[tuple[Waiter, float]] = []
    for model in sorted(by_model):
        own_seen: dict[tuple[int, str], int] = {}
        for position, waiter in enumerate(sorted(by_model[model], key=lambda w: w.order)):
            mine = (waiter.priority, waiter.key)
            own = own_seen.get(mine, 0)
            own_seen[mine] = own + 1
            wait = estimate(waiter, position, own)
            if wait is not None and wait > CULL_MARGIN * (waiter.deadline - now):
                hopeless.append((waiter, wait))
    return hopeless
