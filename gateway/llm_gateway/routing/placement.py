"""Where one request for a model should go now, from what the router knows: a pure choice.

In order of preference:
1. an instance that has the model loaded and a free slot: with prefix affinity, the one
   likely to hold the longest prefix of the prompt in its caches (`prefix.py`), unless
   that would put it more than `load_share` above the mean load of the model's
   instances, now or over its recent requests (bounded loads); else the fewest in
   flight. Only instances
   that can start the request now compete: nobody waits for a busy instance just for
   its cache;
2. an instance where the model can load without evicting a model that has work: room
   beside the loaded ones first, else by unloading idle models only. A second copy of
   a model already loaded elsewhere only ever loads beside (never evicts), and only
   when the dispatcher says demand warrants it;
3. nowhere: the request waits in the gateway's queue.

Instances reserved for another model (being emptied for its load) take nothing new,
and among loads the ones on an instance already loading something come last (Ollama
loads one model at a time per server, and every cold request waits behind it).

The order among candidates is each step's rank (`_ready_rank`, `_load_rank`): a
preference between instances that can all take the request belongs there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from llm_gateway.routing.instances import Instance


@dataclass(frozen=True, slots=True)
class Choice:
    instance: Instance
    loads: bool  # the request starts a load of its model there
    why: str = ""  # for the decision log
    matched: int = 0  # leading prompt blocks the instance likely holds (prefix affinity)


def _ready_rank(instance: Instance, model: str, recent: float) -> tuple[int, float, int, str]:
    """Among instances with the model loaded and a free slot: fewest in flight first,
    then the smallest share of the model's recent requests (`recent`, with prefix
    affinity: a new conversation goes where fewer conversations come back to)."""
    return (instance.models[model].in_flight, recent, instance.in_flight, instance.name)


def _load_rank(instance: Instance, beside: bool, evicted: int) -> tuple[int, int, int, int, str]:
    """Among instances where the model can load: not already loading, room beside the
    loaded models, fewest evictions, fewest in flight."""
    return (instance.loading, 0 if beside else 1, evicted, instance.in_flight, instance.name)


def within_bound(instance: Instance, model: str, usable: Sequence[Instance], share: float) -> bool:
    """Bounded loads: one more request keeps `instance` within `share` above the mean
    of the instances serving the model (busy ones included), rounded up, or within one
    request above the mean, whichever is more. Without that slack a small count cannot
    follow its prefix at all: with one request in flight on three instances the
    share bound is 1, so a conversation's next turn would leave the instance holding
    its history for an idle one whenever anything else runs there."""
    serving = [i for i in usable if i.resident(model) is not None]
    mean = (sum(i.models[model].total for i in serving) + 1) / max(len(serving), 1)
    bound = max(math.ceil(share * mean), math.ceil(mean) + 1)
    return instance.models[model].total + 1 <= bound


def _affinity_rank(
    instance: Instance, model: str, recent: float
) -> tuple[float, int, int, float, str]:
    """Among equally good holders: the smallest share of the model's recent requests
    (`recent`), then fewest in flight, then the least recently used. A prefix many
    requests share, such as a system prompt, is spread, not piled up; and the
    conversations that start on it are spread by how much each instance has been
    given lately, not by the moment's in-flight count, which misses the
    conversations between two turns that will come back to it."""
    residency = instance.models[model]
    return (recent, residency.in_flight, instance.in_flight, residency.last_used, instance.name)


def _by_prefix(
    ready: Sequence[Instance],
    usable: Sequence[Instance],
    model: str,
    prefix: Callable[[Instance], int],
    share: float,
    over_share: Callable[[Instance], bool],
    recent: Callable[[Instance], float],
) -> Choice | None:
    """The ready instance likely holding the longest prefix, within the load bounds."""
    scored = [(prefix(i), i) for i in ready]
    scored = [
        (m, i)
        for m, i in scored
        if m and within_bound(i, model, usable, share) and not over_share(i)
    ]
    best = max((m for m, _ in scored), default=0)
    if not best:
        return None
    instance = min(
        (i for m, i in scored if m == best), key=lambda i: _affinity_rank(i, model, recent(i))
    )
    why = f"holds {best} blocks of the prompt's prefix (estimated), {instance.in_flight} in flight"
    return Choice(instance, loads=False, why=why, matched=best)


def choose(
    instances: Sequence[Instance],
    model: str,
    size: int = 0,
    *,
    replicate: bool = False,
    exclude: Collection[str] = (),
    prefix: Callable[[Instance], int] | None = None,
    load_share: float = 1.25,
    over_share: Callable[[Instance], bool] = lambda instance: False,
    recent: Callable[[Instance], float] = lambda instance: 0.0,
) -> Choice | None:
    """Where the request goes now, or None (it waits). `prefix`: leading prompt blocks
    an instance likely holds (prefix affinity; None: off); `over_share`: the instance
    took more than its share of the model's recent requests (no affinity to it then);
    `recent`: its share of them (the first tie-break among equal holders)."""
    usable = [
        i
        for i in instances
        if i.usable and i.name not in exclude and i.reserved_for in (None, model)
    ]
    ready = [i for i in usable if i.free_slot(model)]
    if ready and prefix is not None:
        followed = _by_prefix(ready, usable, model, prefix, load_share, over_share, recent)
        if followed is not None:
            return followed
    if ready:
        best = min(ready, key=lambda i: _ready_rank(i, model, recent(i)))
        why = f"loaded there, {best.models[model].total} of its {best.num_parallel} slots taken"
        return Choice(best, loads=False, why=why)
    loaded_elsewhere = any(i.resident(model) is not None for i in instances if i.usable)
    if loaded_elsewhere and not replicate:
        return None
    options: list[tuple[tuple[int, int, int, int, str], Instance, list[str]]] = []
    for instance in usable:
        if instance.resident(model) is not None:
            continue  # loaded here, every slot taken: a slot frees soon
        placement = instance.placement(model, size)
        if placement is None:
            continue
        beside, evicted = placement
        if loaded_elsewhere and not beside:
            continue
        rank = _load_rank(instance, beside, len(evicted))
        options.append((rank, instance, [r.model for r in evicted]))
    if not options:
        return None
    _, best, evicts = min(options, key=lambda option: option[0])
    copy = "a second copy " if loaded_elsewhere else ""
    room = f"evicting idle {', '.join(evicts)}" if evicts else "beside the models loaded there"
    why = f"loads {copy}{room}"
    return Choice(best, loads=True, why=why)
