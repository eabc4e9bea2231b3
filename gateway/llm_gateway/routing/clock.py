"""The router's time: read and scheduled through one object, so tests can hold it still.

Everything in `routing/` that reads the time or waits for a moment (a request's
deadline, load patience, arrival rates, service times, the next cull) asks a `Clock`.
Production uses `SystemClock` (`time.monotonic`, timers on the running event loop);
tests use `ManualClock`, which moves only when told to and fires the timers that fall
due on the way, so an estimate or a deadline can be asserted to the exact second. This
is what the emulator's `SimClock` does for its scheduler.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds: for durations and deadlines inside this process."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch: for times other processes compare (queue heads)."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run `callback` once `now()` reaches `when`."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        # The loop's own clock may be coarser (uvloop: milliseconds), so schedule by delay.
        return asyncio.get_running_loop().call_later(max(0.0, when - self.now()), callback)


class _Scheduled:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that stands still until `advance` (for tests and simulations)."""

    def __init__(self, start: float = 1000.0, epoch: float = 1_800_000_000.0) -> None:
        self._now = start
        self._epoch = epoch  # wall() at now() == 0
        self._timers: list[tuple[float, int, _Scheduled]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._epoch + self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        scheduled = _Scheduled(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), scheduled))
        return scheduled

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, running each timer due on the way at its moment."""
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, scheduled = heapq.heappop(self._timers)
            if scheduled.cancelled:
                continue
            self._now = max(self._now, when)
            scheduled.callback()
        self._now = target

    @property
    def pending(self) -> int:
        """Timers not yet run nor cancelled."""
        return sum(1 for _, _, s in self._timers if not s.cancelled)
