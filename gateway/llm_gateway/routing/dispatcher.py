"""Admission and dispatch with model-aware routing: who goes where, who waits, who is shed.

Every generation request (every flight: coalesced followers never queue) asks for a
slot with `acquire`. It is queued fairly (`fair_queue.py`) and the queue is pumped at
once: whatever can be placed now (`placement.py`, with prefix affinity: `prefix.py`)
leaves in fair order, so an idle stack adds no wait. Each instance takes at most
`num_parallel` requests per loaded model from this gateway; the rest wait here, where
they can be ordered, counted and shed early (`Shed`: a full queue, or a wait estimate,
`waits.py`, past the deadline), rather than inside Ollama, unbounded and in arrival
order. Across replicas a freed slot goes to the best waiting request of any replica
(`fairness.py`); a model loaded nowhere gets an instance after its load patience
(`patience.py`). Each decision is logged at debug level on `llm_gateway.routing`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routing.affinity_step import AffinityStep
from llm_gateway.routing.clock import Clock, SystemClock
from llm_gateway.routing.drains import Drains
from llm_gateway.routing.estimates import (
    Capacity,
    Measurements,
    ModelStats,
    admits,
    place_in_line,
)
from llm_gateway.routing.fair_queue import FairQueue, QueueFull, Waiter
from llm_gateway.routing.fairness import CrossReplica
from llm_gateway.routing.grant import Grant, Ticket
from llm_gateway.routing.holds import Holds
from llm_gateway.routing.instances import Instance, InstancePoller
from llm_gateway.routing.patience import LoadPatience
from llm_gateway.routing.peers import PeerSync, PeerView
from llm_gateway.routing.placement import Choice, choose
from llm_gateway.routing.prefix import Affinity
from llm_gateway.routing.report import InstanceGauges, snapshot
from llm_gateway.routing.shed import (
    Shedder,
    deadline_passed,
    full_queue,
    shutting_down,
    too_long,
)
from llm_gateway.routing.waits import Waits
from llm_gateway.upstream import Upstream
from llm_gateway.vocabulary import PRIORITIES

log = logging.getLogger("llm_gateway.routing")


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
        clock: Clock | None = None,
        affinity: Affinity | None = None,
        drains: Drains | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        # Prefix affinity (`prefix.py`); None: off.
        self.affinity = affinity
        # With the requests waiting for the busy instance holding their prefix (`holds.py`).
        holds = Holds(self.clock, self.pump) if affinity and affinity.wait else None
        self._affinity = AffinityStep(affinity, metrics, label, holds) if affinity else None
        # What admins drained (`drains.py`); shared through Redis when given a guard.
        self.drains = drains or Drains(self.clock)
        self.drains.listen(self.apply_drains)
        # Set when replicas share their in-flight counts (`peers.py`).
        self.peers: PeerSync | None = None
        self.fairness = CrossReplica(self.clock)
        self.instances = list(instances)
        self.queue = queue
        self._metrics = metrics
        self._label = label
        self.measured = Measurements(weights_size)
        self.poller = InstancePoller(
            self.instances, poll_seconds, self.pump, self._loaded_elsewhere, self.clock
        )
        self.patience = LoadPatience(self.clock, load_patience, self.instances, queue, self.pump)
        self.waits = Waits(self.clock, queue, self.measured, self.instances, self.fairness,
                           self.patience)  # fmt: skip
        self._gauges = InstanceGauges(metrics, label)
        self._shedder = Shedder(metrics, self.clock, queue, label)

    async def start(self) -> None:
        await self.drains.start()
        await self.poller.start()
        if self.peers is not None:
            await self.peers.start()

    async def stop(self) -> None:
        await self.drains.stop()
        await self.poller.stop()
        if self.peers is not None:
            await self.peers.stop()
        self.patience.stop()
        for waiter in list(self.queue.waiters()):
            self._shedder.drop(waiter, shutting_down())

    def stats(self, model: str) -> ModelStats:
        return self.measured[model]

    def any_upstream(self) -> Upstream:
        """An instance for requests any of them can answer (/api/tags, /api/show ...)."""
        up = [i for i in self.instances if i.usable] or self.instances
        return min(up, key=lambda i: (i.in_flight, i.name)).upstream

    # -- acquiring a slot ---------------------------------------------------------

    async def acquire(
        self, ticket: Ticket, exclude: frozenset[str] = frozenset(), lost: bool = False
    ) -> Grant:
        """A slot for `ticket`, or `Shed`. `exclude`: instances not to use (a retry);
        `lost`: the retry of a request whose instance went down under it."""
        arrived = self.clock.now()
        self.stats(ticket.model).note_arrival(ticket.priority, ticket.key, ticket.weight, arrived)
        future = asyncio.get_running_loop().create_future()
        waiter = ticket.waiter(arrived, future, exclude, self.affinity is not None, lost)
        try:
            self.queue.push(waiter)
        except QueueFull:
            retry = self.estimate_wait(waiter) or 1.0
            raise self._shedder.counted(waiter, full_queue(self.queue.max_depth, retry)) from None
        self._shedder.gauge(waiter, +1)
        self.pump()
        if not waiter.future.done():
            ahead, own = place_in_line(self.queue.waiters(), waiter)
            estimate = self.waits.at_place(waiter, ahead, own)
            if not admits(estimate, ticket.deadline_seconds):
                assert estimate is not None
                self._shedder.leave(waiter)
                raise self._shedder.counted(waiter, too_long(estimate, ticket.deadline_seconds))
            log.debug(
                "queued %s request of key %s (%s): %d ahead, estimated wait %s, deadline %gs",
                ticket.model, ticket.key, PRIORITIES[ticket.priority], ahead,
                "unknown" if estimate is None else f"{estimate:.2f}s", ticket.deadline_seconds,
            )  # fmt: skip
            self.patience.arm()
        timer = self.clock.call_at(waiter.deadline, lambda: self._expire(waiter, ticket))
        try:
            grant: Grant = await waiter.future
        except asyncio.CancelledError:
            self._shedder.leave(waiter)  # the client went away while queued
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().release()  # dispatched in the same instant
            raise
        finally:
            timer.cancel()
        return grant

    def estimate_wait(self, waiter: Waiter) -> float | None:
        """Seconds until `waiter` would start, as things stand; None: cannot tell yet."""
        return self.waits.of(waiter)

    def _expire(self, waiter: Waiter, ticket: Ticket) -> None:
        """The deadline passed with `waiter` still queued."""
        if not waiter.future.done():
            retry = self.estimate_wait(waiter) or ticket.deadline_seconds
            self._shedder.drop(waiter, deadline_passed(ticket.deadline_seconds, retry))

    # -- dispatching --------------------------------------------------------------

    def pump(self) -> None:
        """Dispatch, in fair order, every waiter that can be placed now."""
        self.drains.watch(self.instances)
        self.patience.release_unwanted()
        if self._affinity is not None:
            self._affinity.settle(self.instances)
        while True:
            placeable = [p for p in map(self._placeable, self.queue.models()) if p is not None]
            if not placeable:
                break
            waiter, choice = min(placeable, key=lambda pair: pair[0].order)
            self._dispatch(waiter, choice)
        self._shedder.cull(self.waits.at_place)
        self.measured.learn_sizes(self.instances)
        self._gauges.update(self.instances, self.drains.all())
        if self.peers is not None:
            self.peers.changed()

    def _placeable(self, model: str) -> tuple[Waiter, Choice] | None:
        """The next waiter for `model` and where it goes now (None: nobody can go). A
        waiter that would rather wait for the busy holder of its prefix is held and
        passed over, and the next one looked at (`holds.py`)."""
        affinity = self._affinity
        ready = affinity.ready(model, self.instances) if affinity else []
        held = affinity.held() if affinity else frozenset[Waiter]()
        while (waiter := self.queue.best([model], skip=held)) is not None or ready:
            if ready and (waiter is None or ready[0][0].order < waiter.order):
                first, holder = ready[0]  # the slot it waited for
                return first, Choice(holder, loads=False, why="waited there for its prefix")
            assert waiter is not None
            if self.fairness.yields(waiter):
                return None
            prefix = affinity.choose_args(waiter, self.instances) if affinity else {}
            choice = choose(
                self.instances, model, self.measured.size(model),
                replicate=self._wants_copy(model), exclude=waiter.exclude, **prefix,
            )  # fmt: skip
            if choice is None or affinity is None:
                return None if choice is None else (waiter, choice)
            if not affinity.waits(waiter, choice.instance, self.instances, self.stats(model)):
                return waiter, choice
            held = affinity.held()
        return None

    def _wants_copy(self, model: str) -> bool:
        """A second copy of a loaded model pays off when a slot's worth of work waits."""
        return self.queue.depth(model) > max(1, Capacity.of(self.instances, model).slots)

    def _dispatch(self, waiter: Waiter, choice: Choice) -> None:
        self.queue.take(waiter)
        self._shedder.gauge(waiter, -1)
        instance, model = choice.instance, waiter.model
        at = self.clock.now()
        loads = instance.dispatched(model, self.measured.size(model), at)
        if loads:
            self._metrics.model_loads.labels(instance.name, self._label(model)).inc()
        evaluated = self._affinity.dispatched(instance, waiter, loads) if self._affinity else 0
        waited = at - waiter.enqueued_at
        self._metrics.queue_wait.labels(self._label(model), PRIORITIES[waiter.priority]).observe(
            waited
        )
        log.debug(
            "placed %s request of key %s on %s after %.2fs in the queue: %s",
            model, waiter.key, instance.name, waited, choice.why,
        )  # fmt: skip
        grant = Grant(self, instance, model, waiter.key, loads, at)
        grant.evaluated_chars = evaluated
        self.fairness.served(model, waiter.key, waiter.weight)
        if waiter.future.done():  # cancelled in this very instant
            grant.release()
            return
        waiter.future.set_result(grant)

    # -- a grant's life -----------------------------------------------------------

    def answered(self, grant: Grant) -> None:
        """`grant`'s first byte arrived: a load it started has finished; else the time
        to it is mostly its prompt's prefill (the speed holds are weighed with)."""
        grant.instance.answered(grant.model)
        seconds = self.clock.now() - grant.dispatched_at
        if grant.loads:
            self.stats(grant.model).note_load(seconds)
        elif self._affinity is not None:
            self._affinity.prefill(grant.model, grant.evaluated_chars, seconds)

    def released(self, grant: Grant, failure: str | None) -> None:
        """`grant`'s slot is free again (call `Grant.release`, which calls this once)."""
        instance, model = grant.instance, grant.model
        at = self.clock.now()
        instance.finished(model, at, grant.dispatched_at)
        if failure == "down":
            instance.up = False  # passive health: the poll brings it back
            if self.affinity is not None:
                self.affinity.lost(instance.name)  # its caches went with it
        if failure is not None:
            residency = instance.models.get(model)
            if grant.loads and residency is not None and residency.in_flight == 0:
                del instance.models[model]
        else:
            self.stats(model).note_service(at - grant.dispatched_at)
        if instance.draining and not instance.in_flight:
            log.debug("drained %s: this replica has no request in flight there", instance.name)
        self.pump()

    def _loaded_elsewhere(self, instance: Instance, model: str) -> None:
        """A model appeared in /api/ps without this gateway loading it (another replica)."""
        self._metrics.model_loads.labels(instance.name, self._label(model)).inc()

    def apply_drains(self) -> None:
        """The drains changed: place nothing new on a drained instance, again on the others."""
        self.drains.apply(self.instances)
        self.pump()

    # -- other replicas -----------------------------------------------------------------

    def peer_state(self) -> dict[str, Any]:
        """What this replica has in flight and waiting, for the others (`peers.py`)."""
        return self.fairness.state(self.instances, self.queue)

    def apply_peers(self, view: PeerView) -> None:
        for instance in self.instances:
            instance.set_elsewhere(view.in_flight.get(instance.name, {}))
        self.fairness.view = view
        self.pump()

    # -- what an admin may see ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return snapshot(
            self.instances,
            self.queue,
            self.measured.models,
            self.drains.all(),
            self.clock.now(),
            self.affinity,
            self._affinity.holds if self._affinity else None,
        )
