"""A request the gateway refuses itself: its own outcome, not an upstream failure.

The dispatcher raises `Shed` when a request cannot be served in time (a full queue,
an estimate past its deadline, a deadline passed in the queue, a shutdown, or the
instance serving it lost before its first byte with no other able to start it in
time). It reaches
the client as 503 with a `Retry-After` from the estimate, and it is counted as
`llm_shed_total`, never as an upstream error: Ollama was never asked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routing.clock import Clock
from llm_gateway.routing.estimates import overtaken
from llm_gateway.routing.fair_queue import FairQueue, Waiter
from llm_gateway.vocabulary import PRIORITIES

log = logging.getLogger("llm_gateway.routing")

# The longest Retry-After the gateway answers with.
MAX_RETRY_AFTER = 600.0
# How often the queue is looked at again for requests that can no longer start in time.
CULL_SECONDS = 0.1


class Shed(Exception):
    """The request is refused without waiting (or after its deadline passed)."""

    status = 503

    def __init__(self, reason: str, retry_after: float, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        # Seconds the request would have waited, as estimated (for the decision log).
        self.estimate = retry_after
        # An estimate can be unbounded (higher classes arrive faster than slots drain).
        self.retry_after = min(max(1.0, retry_after), MAX_RETRY_AFTER)
        self.message = message


class Shedder:
    """Sheds a waiting request: counts it (`llm_shed_total`), says why at debug level,
    and fails its wait with the `Shed`; takes requests out of the queue (and its
    depth gauge) whichever way they leave it other than dispatch."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        clock: Clock,
        queue: FairQueue,
        label: Callable[[str], str],
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._queue = queue
        self._label = label
        self._next_cull = 0.0

    def gauge(self, waiter: Waiter, change: int) -> None:
        self._metrics.queue_depth.labels(
            self._label(waiter.model), PRIORITIES[waiter.priority]
        ).inc(change)

    def leave(self, waiter: Waiter) -> None:
        """`waiter` leaves the queue (shed, or its client went away)."""
        if waiter.active:
            self._queue.remove(waiter)
            self.gauge(waiter, -1)

    def drop(self, waiter: Waiter, shed: Shed) -> None:
        """Shed `waiter` from the queue (unless it was answered in this very instant)."""
        self.leave(waiter)
        self.refuse(waiter, shed)

    def cull(self, at_place: Callable[[Waiter, int, int], float | None]) -> None:
        """Shed, as soon as it shows, every waiter that clearly cannot start in time
        (at most every CULL_SECONDS: `at_place` is the wait estimate at a place)."""
        at = self._clock.now()
        if at < self._next_cull or not len(self._queue):
            return
        self._next_cull = at + CULL_SECONDS
        for waiter, estimate in overtaken(list(self._queue.waiters()), at_place, at):
            self.drop(waiter, overtaken_in_queue(estimate))

    def counted(self, waiter: Waiter, shed: Shed) -> Shed:
        if waiter.lost and shed.reason != "shutdown":
            shed = instance_lost(shed.estimate, waiter.deadline - waiter.enqueued_at)
        priority = PRIORITIES[waiter.priority]
        self._metrics.shed.labels(shed.reason, priority).inc()
        log.debug(
            "shed %s request of key %s (%s): %s, estimated wait %.2fs, %.2fs of its "
            "deadline left, Retry-After %gs",
            waiter.model, waiter.key, priority, shed.reason, shed.estimate,
            waiter.deadline - self._clock.now(), shed.retry_after,
        )  # fmt: skip
        return shed

    def refuse(self, waiter: Waiter, shed: Shed) -> None:
        """Fail `waiter`'s wait (unless it was answered in this very instant)."""
        if not waiter.future.done():
            waiter.future.set_exception(self.counted(waiter, shed))


def wait_text(seconds: float) -> str:
    """About how long, in words a client log can show ("about 42s", "indefinitely")."""
    return f"about {math.ceil(seconds)}s" if math.isfinite(seconds) else "indefinitely"


# -- why, in the words the client reads ---------------------------------------------


def full_queue(max_depth: int, estimate: float) -> Shed:
    return Shed("queue_full", estimate, f"server busy: {max_depth} requests are already waiting")


def too_long(estimate: float, deadline_seconds: float) -> Shed:
    return Shed(
        "overloaded",
        estimate,
        f"server busy: this request would wait {wait_text(estimate)} for a slot, "
        f"longer than its deadline ({deadline_seconds:g}s)",
    )


def instance_lost(estimate: float, deadline_seconds: float) -> Shed:
    """A request already dispatched whose instance went down before its first byte: it
    is sent again elsewhere, and refused when no other instance can start it in time.
    Not a wait it was kept in: the client learns what happened, not "server busy"."""
    return Shed(
        "instance_lost",
        estimate,
        "the instance serving this request went down before its first token, and no "
        f"other can start it within its deadline ({deadline_seconds:g}s): it would wait "
        f"{wait_text(estimate)}",
    )


def overtaken_in_queue(estimate: float) -> Shed:
    return Shed(
        "overloaded",
        estimate,
        f"server busy: this request would wait {wait_text(estimate)} more for a slot, "
        "past its deadline",
    )


def deadline_passed(deadline_seconds: float, estimate: float) -> Shed:
    return Shed(
        "deadline", estimate, f"server busy: no slot for this request within {deadline_seconds:g}s"
    )


def shutting_down() -> Shed:
    return Shed("shutdown", 5, "the gateway is shutting down")
