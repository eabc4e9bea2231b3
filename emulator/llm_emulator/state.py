"""Mutable run-time state: knobs, armed faults, request counters, the scheduler.

One `EmulatorState` per app; the event loop is single-threaded, so no locks.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from llm_emulator.catalog import Catalog
from llm_emulator.clock import SimClock
from llm_emulator.scheduler import MAX_QUEUE_MESSAGE, Scheduler
from llm_emulator.settings import EmulatorSettings

# Faults hit the requests that make the model work, unless `paths` says otherwise; a
# gateway's background /api/tags polling must not eat a fault armed for a test's request.
INFERENCE_PATHS: tuple[str, ...] = (
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
)


@dataclass
class Knobs:
    tokens: int
    first_token_delay: float
    token_delay: float


@dataclass
class Faults:
    fail_next: int = 0
    fail_status: int = 500
    fail_message: str | None = None
    cut_next: int = 0
    cut_after: int = 1
    error_next: int = 0
    error_after: int = 1
    error_message: str = "an error was encountered while running the model: emulated fault"
    hang_next: int = 0  # -1: every request hangs until reset
    paths: tuple[str, ...] = INFERENCE_PATHS


@dataclass(frozen=True)
class RequestFaults:
    """What one request drew from the armed faults (at most one of them)."""

    hang: bool = False
    fail_status: int | None = None
    fail_message: str = ""
    cut_after: int | None = None
    error_after: int | None = None
    error_message: str = ""


NO_FAULTS = RequestFaults()

_FAIL_MESSAGES = {
    500: "llama runner process has terminated: exit status 2",
    503: MAX_QUEUE_MESSAGE,
}


@dataclass
class Counters:
    requests: dict[str, int] = field(default_factory=dict)
    total: int = 0
    active: int = 0
    completed: int = 0
    cancelled: int = 0
    cut: int = 0


class EmulatorState:
    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.started_ns = time.time_ns()
        self.clock = SimClock(settings.time_scale)
        self.catalog = self._start_catalog()
        self.knobs = self._start_knobs()
        self.faults = Faults()
        self.counters = Counters()
        self.scheduler = Scheduler(settings.scheduler, self.clock)

    def _start_catalog(self) -> Catalog:
        sizes = self.settings.scheduler.model_size_bytes()
        return Catalog(self.settings.models, self.started_ns, sizes)

    def _start_knobs(self) -> Knobs:
        s = self.settings
        return Knobs(s.tokens, s.first_token_delay, s.token_delay)

    def reset(self) -> None:
        """Counters and faults cleared, start-up knobs and models back, nothing loaded."""
        # Requests in flight keep running: their `active` slot is still theirs, and
        # they finish on the runner they hold (the old scheduler, now closed).
        active = self.counters.active
        self.catalog = self._start_catalog()
        self.knobs = self._start_knobs()
        self.faults = Faults()
        self.counters = Counters(active=active)
        self.scheduler.close()
        self.scheduler = Scheduler(self.settings.scheduler, self.clock)

    # -- counters -------------------------------------------------------------

    def arrived(self, method: str, path: str) -> None:
        key = f"{method} {path}"
        c = self.counters
        c.requests[key] = c.requests.get(key, 0) + 1
        c.total += 1
        c.active += 1

    def finished(self, outcome: str) -> None:
        """outcome: `completed`, `cancelled` (client went away) or `cut` (we aborted)."""
        c = self.counters
        c.active = max(0, c.active - 1)
        if outcome == "cancelled":
            c.cancelled += 1
        elif outcome == "cut":
            c.cut += 1
        else:
            c.completed += 1

    def stats(self) -> dict[str, Any]:
        return asdict(self.counters)

    # -- faults ---------------------------------------------------------------

    def take_faults(self, path: str, streaming: bool) -> RequestFaults:
        """The fault this request suffers, consumed in arrival order.

        Priority: hang, fail, then (streams only) cut, error mid-stream.
        """
        f = self.faults
        if path not in f.paths:
            return NO_FAULTS
        if f.hang_next != 0:
            if f.hang_next > 0:
                f.hang_next -= 1
            return RequestFaults(hang=True)
        if f.fail_next > 0:
            f.fail_next -= 1
            message = f.fail_message or _FAIL_MESSAGES.get(f.fail_status, "emulated failure")
            return RequestFaults(fail_status=f.fail_status, fail_message=message)
        if streaming and f.cut_next > 0:
            f.cut_next -= 1
            return RequestFaults(cut_after=f.cut_after)
        if streaming and f.error_next > 0:
            f.error_next -= 1
            return RequestFaults(error_after=f.error_after, error_message=f.error_message)
        return NO_FAULTS

    def faults_view(self) -> dict[str, Any]:
        view = asdict(self.faults)
        view["paths"] = list(self.faults.paths)
        return view
