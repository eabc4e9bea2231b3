"""Mutable run-time state: knobs, armed faults, request counters, loaded models.

One `EmulatorState` per app; the event loop is single-threaded, so no locks.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from llm_emulator.catalog import Catalog
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
    503: "server busy, please try again.  maximum pending requests exceeded",
}


@dataclass
class Counters:
    requests: dict[str, int] = field(default_factory=dict)
    total: int = 0
    active: int = 0
    completed: int = 0
    cancelled: int = 0
    cut: int = 0


@dataclass
class Loaded:
    expires_ns: int


class EmulatorState:
    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.started_ns = time.time_ns()
        self.catalog = Catalog(settings.models, self.started_ns)
        self.knobs = self._start_knobs()
        self.faults = Faults()
        self.counters = Counters()
        self.loaded: dict[str, Loaded] = {}

    def _start_knobs(self) -> Knobs:
        s = self.settings
        return Knobs(s.tokens, s.first_token_delay, s.token_delay)

    def reset(self) -> None:
        """Counters and faults cleared, start-up knobs and models back."""
        # Requests in flight keep running: their `active` slot is still theirs.
        active = self.counters.active
        self.catalog = Catalog(self.settings.models, self.started_ns)
        self.knobs = self._start_knobs()
        self.faults = Faults()
        self.counters = Counters(active=active)
        self.loaded.clear()

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

    # -- loaded models (/api/ps) ----------------------------------------------

    def touch(self, model: str, keep_alive_ns: int | None) -> None:
        if keep_alive_ns == 0:
            self.loaded.pop(model, None)
            return
        now = time.time_ns()
        duration = 300_000_000_000 if keep_alive_ns is None else keep_alive_ns
        # Negative keep_alive keeps a model loaded forever (Ollama shows a far-future time).
        expires = now + duration if duration > 0 else now + 100 * 365 * 86400 * 10**9
        self.loaded[model] = Loaded(expires)

    def loaded_models(self) -> list[tuple[str, int]]:
        now = time.time_ns()
        for name in [n for n, entry in self.loaded.items() if entry.expires_ns <= now]:
            del self.loaded[name]
        return sorted(
            ((n, e.expires_ns) for n, e in self.loaded.items()), key=lambda x: x[1], reverse=True
        )
