"""The wait estimate of a queued request, from the router's live state.

`estimates.py` holds the arithmetic as pure functions of (stats, queue view, now);
this gathers their inputs at one moment of the injected clock: the request's place in
line, what was measured of its model, the slots serving it (shared with the models it
takes turns with when capacity is short), the replicas, the load patience.
"""

from __future__ import annotations

from collections.abc import Sequence

from llm_gateway.routing.clock import Clock
from llm_gateway.routing.estimates import (
    Capacity,
    Measurements,
    contended,
    demand,
    place_in_line,
    wait_estimate,
)
from llm_gateway.routing.fair_queue import FairQueue, Waiter
from llm_gateway.routing.fairness import CrossReplica
from llm_gateway.routing.instances import Instance
from llm_gateway.routing.patience import LoadPatience


class Waits:
    def __init__(
        self,
        clock: Clock,
        queue: FairQueue,
        measured: Measurements,
        instances: Sequence[Instance],
        fairness: CrossReplica,
        patience: LoadPatience,
    ) -> None:
        self._clock = clock
        self._queue = queue
        self._measured = measured
        self._instances = instances
        self._fairness = fairness
        self._patience = patience

    def of(self, waiter: Waiter) -> float | None:
        """Seconds until `waiter` would start, as things stand; None: cannot tell yet."""
        ahead, own = place_in_line(self._queue.waiters(), waiter)
        return self.at_place(waiter, ahead, own)

    def at_place(self, waiter: Waiter, ahead: int, own: int) -> float | None:
        """The same, with its place in line (`ahead` of it, `own` of its key) given."""
        return wait_estimate(
            self._measured[waiter.model], self.capacity(waiter.model), waiter, ahead, own,
            self._clock.now(),
        )  # fmt: skip

    def capacity(self, model: str) -> Capacity:
        """The slots serving `model`, shared with the models it takes turns with when
        capacity is short (`contended`): seen at once when an instance goes down."""
        at = self._clock.now()
        demands = {name: demand(stats, at) for name, stats in self._measured.models.items()}
        return contended(
            Capacity.of(self._instances, model, self._fairness.replicas()), model,
            self._instances, demands, self._measured.size, self._patience.patience,
            self._measured[model].load,
        )  # fmt: skip
