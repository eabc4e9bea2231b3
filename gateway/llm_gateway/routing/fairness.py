"""Fairness across gateway replicas: which replica's waiting request takes a freed slot.

Each replica publishes (`peers.py`) what it has in flight, the head of its queue per
model, and how much it served each key lately; `CrossReplica` keeps this replica's
side of that. A freed slot goes to the best head across replicas: class first, then
the key served least lately on every replica (dispatches over the key's weight,
halving every `SERVED_HALF_LIFE` seconds), then the longer wait. Every replica ranks
the same published figures the same way, so exactly one of them takes the slot; the
others yield (`yields`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llm_gateway.routing.clock import Clock
from llm_gateway.routing.fair_queue import FairQueue, Waiter
from llm_gateway.routing.instances import Instance
from llm_gateway.routing.peers import EMPTY, PeerView

# How fast a key's recent service is forgotten when ranking requests across replicas.
SERVED_HALF_LIFE = 30.0


class CrossReplica:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.view: PeerView = EMPTY
        # Recent service per (model, key name): (value, when), decaying (see `recent`).
        self._served: dict[tuple[str, str], tuple[float, float]] = {}
        self._published: dict[tuple[str, str], float] = {}

    def wall_ms(self, at: float) -> int:
        """A monotonic time as wall-clock ms (comparable across processes, roughly)."""
        clock = self._clock
        return int(clock.wall() * 1000 - (clock.now() - at) * 1000)

    def recent(self, model: str, key: str, at: float) -> float:
        value, since = self._served.get((model, key), (0.0, at))
        decay: float = 0.5 ** ((at - since) / SERVED_HALF_LIFE)
        return value * decay

    def served(self, model: str, key: str, weight: float) -> None:
        """One request of `key` was dispatched here."""
        at = self._clock.now()
        self._served[(model, key)] = (self.recent(model, key, at) + 1.0 / weight, at)

    def state(self, instances: Iterable[Instance], queue: FairQueue) -> dict[str, Any]:
        """What this replica has in flight and waiting, for the others (`peers.py`)."""
        in_flight = {
            f"{instance.name}|{r.model}": r.in_flight
            for instance in instances
            for r in instance.models.values()
            if r.in_flight
        }
        at = self._clock.now()
        self._published = {
            (model, key): round(value, 3)
            for (model, key) in list(self._served)
            if (value := self.recent(model, key, at)) > 0.01
        }
        served = {f"{model}|{key}": value for (model, key), value in self._published.items()}
        heads: dict[str, list[Any]] = {}
        for model in queue.models():
            head = queue.best([model])
            if head is not None:
                heads[model] = [head.priority, self.wall_ms(head.enqueued_at), head.key]
        return {"in_flight": in_flight, "served": served, "heads": heads}

    def replicas(self) -> int:
        """Replicas sharing the slots (1 when alone or not sharing)."""
        return 1 + self.view.replicas

    def _rank(self, model: str, priority: int, key: str, since_ms: int) -> tuple[int, float, int]:
        """Who goes first across replicas: class, then the key served least lately (on
        every replica, weighted), then the longer wait. From the published figures only,
        this replica's own included, so that every replica ranks alike."""
        pair = (model, key)
        served = self._published.get(pair, 0.0) + self.view.served.get(pair, 0.0)
        return (priority, served, since_ms)

    def yields(self, waiter: Waiter) -> bool:
        """Another replica waits with a request that ranks before this one: it goes first."""
        heads = self.view.heads.get(waiter.model)
        if not heads:
            return False
        model = waiter.model
        mine = self._rank(model, waiter.priority, waiter.key, self.wall_ms(waiter.enqueued_at))
        return any(self._rank(model, priority, key, since) < mine for priority, since, key in heads)
