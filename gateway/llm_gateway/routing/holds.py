"""Waiting for the instance that holds a prompt's prefix, when it is the sooner start.

Prefix affinity (`prefix.py`) sends a request to the instance likely to hold its
prefix only while that instance has a free slot. When every slot there is taken, the
request could start now on another instance, and pay there the whole prefill of what
it would have found cached: for a chat's next turn, its history (seconds, on a big
model). Or it could wait for a slot where its context is and pay almost nothing.

It waits only when a slot there is expected to free sooner than that prefill would
take elsewhere (`worth_waiting`): then its first token comes sooner where its context
is, so the wait is for the earliest first token, not for the cache as such; and the
other instance does not spend its GPU recomputing a context another one holds. The
wait is bounded by the prefill it saves: past that, going elsewhere would have been
sooner, and the request goes wherever it can start. A drained, down or over-loaded
holder is never waited for (placement's load bounds still decide when its slot frees).

What each needs is measured, not assumed:

- when a slot frees: this replica's requests in flight there and when each started,
  against the seconds a request of the model holds its slot (`ModelStats.service`);
  another replica's requests there count as half a service each;
- what the prefill would cost: seconds per prompt character evaluated, learnt from
  the requests this gateway sent (the time from dispatch to the first byte, which is
  what a client waits for, over the characters the router estimated were not cached
  there: `PrefillSpeed`), on its own clock. Until it has learnt, nobody waits.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llm_gateway.routing.clock import Clock, Timer
from llm_gateway.routing.fair_queue import Waiter
from llm_gateway.routing.instances import Instance, Residency

# Answers a prefill speed is measured over, and the fewest it needs.
SPEED_WINDOW = 32
SPEED_SAMPLES = 4
# An answer teaches the speed only when its estimated uncached part is this long: the
# estimate is off by up to one block, which would swamp a short one.
SPEED_MIN_CHARS = 2048
# Wait only when a slot is expected to free within this share of the prefill saved
# (1: whenever the first token is expected sooner there). 2 and 4 were tried in
# bench-system W5: no fewer prompt tokens evaluated, and later first tokens.
WAIT_SHARE = 1.0


@dataclass(slots=True)
class PrefillSpeed:
    """Seconds of prefill per prompt character, per model: each request's time from
    dispatch to first byte over the characters estimated uncached where it went."""

    samples: dict[str, deque[float]] = field(default_factory=dict)

    def note(self, model: str, evaluated_chars: int, seconds: float) -> None:
        if evaluated_chars < SPEED_MIN_CHARS or seconds <= 0:
            return
        window = self.samples.get(model)
        if window is None:
            window = self.samples[model] = deque(maxlen=SPEED_WINDOW)
        window.append(seconds / evaluated_chars)

    def per_char(self, model: str) -> float | None:
        """The median over the window (an estimate off in either direction is damped)."""
        window = self.samples.get(model)
        if window is None or len(window) < SPEED_SAMPLES:
            return None
        return statistics.median(window)


def slot_frees_in(
    residency: Residency, num_parallel: int, service: float, now: float, waiting: int
) -> float | None:
    """Seconds until a slot of `residency` frees for the next of `waiting` + 1 requests
    held for it; None when it cannot tell (more wait than requests run there)."""
    residuals = [max(service - (now - start), 0.0) for start in residency.starts]
    residuals += [service / 2] * residency.elsewhere
    residuals.sort()
    need = residency.total - num_parallel + 1 + waiting
    if need <= 0:
        return 0.0
    return residuals[need - 1] if need <= len(residuals) else None


def worth_waiting(frees_in: float | None, saved_seconds: float, left: float) -> bool:
    """Wait for the holder: its slot frees well within the prefill saved, and in time."""
    return frees_in is not None and frees_in < WAIT_SHARE * saved_seconds and frees_in < left


@dataclass(slots=True)
class Hold:
    instance: str
    until: float  # the request goes wherever it can start from then on
    timer: Timer


class Holds:
    """The requests waiting for the instance that holds their prefix."""

    def __init__(self, clock: Clock, wake: Callable[[], None]) -> None:
        self._clock = clock
        self._wake = wake  # the dispatcher's pump: a hold that ends needs a look
        self._holds: dict[Waiter, Hold] = {}
        # Each request's wait ends once: a request held again (its holder's freed slot
        # went to another) keeps its first bound. Waiter -> (bound, holder).
        self._bounds: dict[Waiter, tuple[float, str]] = {}
        self.speed = PrefillSpeed()

    def held(self) -> frozenset[Waiter]:
        return frozenset(self._holds)

    def ready(
        self,
        model: str,
        instances: Sequence[Instance],
        allowed: Callable[[Instance], bool] = lambda holder: True,
    ) -> list[tuple[Waiter, Instance]]:
        """Held requests for `model` whose holder has a slot free now and is `allowed`
        (the load bounds), in queue order: the slot they waited for is theirs before a
        request that did not wait."""
        by_name = {i.name: i for i in instances}
        free = [
            (waiter, holder)
            for waiter, hold in self._holds.items()
            if waiter.model == model
            and (holder := by_name.get(hold.instance)) is not None
            and holder.free_slot(model)
        ]
        ready = []
        for waiter, holder in free:
            if allowed(holder):
                ready.append((waiter, holder))
            else:  # a slot there, but over the bounds: it goes where placement says
                self._end(waiter)
        return sorted(ready, key=lambda pair: pair[0].order)

    def on(self, instance: str) -> int:
        return sum(1 for hold in self._holds.values() if hold.instance == instance)

    def settle(self, instances: Sequence[Instance]) -> None:
        """End the holds whose holder is gone or whose time is up, and forget requests
        no longer queued."""
        now = self._clock.now()
        by_name = {i.name: i for i in instances}
        for waiter, hold in list(self._holds.items()):
            holder = by_name.get(hold.instance)
            gone = holder is None or not holder.usable or holder.resident(waiter.model) is None
            if not waiter.active or gone or now >= hold.until:
                self._end(waiter)
        for waiter in [w for w in self._bounds if not w.active]:
            del self._bounds[waiter]

    def hold(
        self,
        waiter: Waiter,
        holder: Instance,
        saved_chars: int,
        service: float,
    ) -> bool:
        """Hold `waiter` for `holder` (every slot taken there) if that is its sooner
        start; True when it now waits for it."""
        per_char = self.speed.per_char(waiter.model)
        residency = holder.resident(waiter.model)
        if per_char is None or residency is None or service <= 0 or not holder.usable:
            return False
        now = self._clock.now()
        saved = saved_chars * per_char
        until = min(self._bounds.get(waiter, (now + saved, ""))[0], waiter.deadline)
        frees = slot_frees_in(residency, holder.num_parallel, service, now, self.on(holder.name))
        if not worth_waiting(frees, until - now, waiter.deadline - now):
            return False
        self._bounds[waiter] = (until, holder.name)
        timer = self._clock.call_at(until, self._wake)
        self._holds[waiter] = Hold(holder.name, until, timer)
        return True

    def placed(self, waiter: Waiter, instance: str) -> str | None:
        """`waiter` was dispatched: how its wait ended, if it waited ("holder": placed
        on the instance it waited for, "elsewhere": not)."""
        bound = self._bounds.pop(waiter, None)
        if waiter in self._holds:
            self._end(waiter)
        if bound is None:
            return None
        return "holder" if bound[1] == instance else "elsewhere"

    def _end(self, waiter: Waiter) -> None:
        hold = self._holds.pop(waiter)
        hold.timer.cancel()
