"""Where one request for a model should go now, from what the router knows: a pure choice.

In order of preference:
1. an instance that has the model loaded and a free slot (fewest in flight first);
2. an instance where the model can load without evicting a model that has work: room
   beside the loaded ones first, else by unloading idle models only. A second copy of
   a model already loaded elsewhere only ever loads beside (never evicts), and only
   when the dispatcher says demand warrants it;
3. nowhere: the request waits in the gateway's queue.

Instances reserved for another model (being drained for it) take nothing new, and
among loads the ones on an instance already loading something come last (Ollama
loads one model at a time per server, and every cold request waits behind it).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from llm_gateway.routing.instances import Instance


@dataclass(frozen=True, slots=True)
class Choice:
    instance: Instance
    loads: bool  # the request starts a load of its model there


def choose(
    instances: Sequence[Instance],
    model: str,
    size: int = 0,
    *,
    replicate: bool = False,
    exclude: Collection[str] = (),
) -> Choice | None:
    usable = [
        i for i in instances if i.up and i.name not in exclude and i.reserved_for in (None, model)
    ]
    ready = [i for i in usable if i.free_slot(model)]
    if ready:
        best = min(ready, key=lambda i: (i.models[model].in_flight, i.in_flight, i.name))
        return Choice(best, loads=False)
    loaded_elsewhere = any(i.resident(model) is not None for i in instances if i.up)
    if loaded_elsewhere and not replicate:
        return None
    options = []
    for instance in usable:
        if instance.resident(model) is not None:
            continue  # loaded here, every slot taken: a slot frees soon
        placement = instance.placement(model, size)
        if placement is None:
            continue
        beside, evicted = placement
        if loaded_elsewhere and not beside:
            continue
        rank = (
            instance.loading,
            0 if beside else 1,
            len(evicted),
            instance.in_flight,
            instance.name,
        )
        options.append((rank, instance))
    if not options:
        return None
    return Choice(min(options, key=lambda option: option[0])[1], loads=True)
