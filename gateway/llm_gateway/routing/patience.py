"""Load patience: a model loaded nowhere gets an instance reserved for it, in time.

A model loaded nowhere whose oldest request has waited `patience` seconds gets an
instance reserved: nothing new for other models goes there (`placement.py` skips it),
and once its work has drained the model loads (evicting what is then idle). That is
how a third model gets a GPU when two busy ones hold both, without the thrash
Ollama's own scheduler would cause by evicting a model with steady traffic.

The instance reserved is the one whose current work is least wanted: the fewest
requests waiting for its models, then the fewest in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from llm_gateway.routing.clock import Clock, Timer
from llm_gateway.routing.fair_queue import FairQueue
from llm_gateway.routing.instances import Instance

log = logging.getLogger("llm_gateway.routing")


def reservable(instances: Sequence[Instance], queue: FairQueue) -> Instance | None:
    """The instance to reserve for a model loaded nowhere (None: none can be)."""
    options = [i for i in instances if i.usable and i.reserved_for is None]
    if not options:
        return None

    def demand(instance: Instance) -> tuple[int, int, str]:
        queued = sum(queue.depth(model) for model in instance.models)
        return (queued, instance.in_flight, instance.name)

    return min(options, key=demand)


class LoadPatience:
    """Looks, every quarter of `patience` while anything waits, for models to reserve for."""

    def __init__(
        self,
        clock: Clock,
        patience: float,
        instances: Sequence[Instance],
        queue: FairQueue,
        pump: Callable[[], None],
    ) -> None:
        self._clock = clock
        self.patience = patience
        self._instances = instances
        self._queue = queue
        self._pump = pump
        self._timer: Timer | None = None

    def arm(self) -> None:
        """Look again soon (a request is waiting)."""
        if self._timer is None:
            every = max(self.patience / 4, 0.05)
            self._timer = self._clock.call_at(self._clock.now() + every, self.check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def release_unwanted(self) -> None:
        """Free every instance reserved for a model nobody waits for any more (its
        requests were shed, or left): else the instance would take nothing new until
        that model's next request, even after coming back from an outage empty."""
        for instance in self._instances:
            model = instance.reserved_for
            if model is not None and not self._queue.depth(model):
                instance.reserved_for = None
                log.debug(
                    "released %s, reserved for %s: no request waits for it any more",
                    instance.name, model,
                )  # fmt: skip

    def check(self) -> None:
        self._timer = None
        at = self._clock.now()
        waiting = False
        for model in self._queue.models():
            waiting = True
            if any(i.resident(model) for i in self._instances if i.usable):
                continue
            if any(i.reserved_for == model for i in self._instances):
                continue
            oldest = self._queue.oldest(model)
            if oldest is None or at - oldest < self.patience:
                continue
            victim = reservable(self._instances, self._queue)
            if victim is not None:
                victim.reserved_for = model
                log.debug(
                    "reserved %s for a load of %s, loaded nowhere and waited %.1fs: "
                    "nothing new for other models goes there until it has loaded",
                    victim.name, model, at - oldest,
                )  # fmt: skip
        self._pump()
        if waiting:
            self.arm()
