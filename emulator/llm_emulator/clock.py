"""Simulated time: the emulated server runs `scale` times faster than real time.

Everything configured in seconds (knob delays, load and unload times, keep-alive,
speeds in tokens/s) is simulated time; waiting it out takes `1/scale` of it for real.
Durations the server reports (`load_duration`, `eval_duration`, ...) are the real time
measured times `scale`, so a client reads what the simulated Ollama would have taken.
Timestamps (`created_at`, `expires_at`) stay on the real wall clock: they say when
something happens, and a client compares them with its own clock.
"""

from __future__ import annotations

import time


class SimClock:
    __slots__ = ("scale",)

    def __init__(self, scale: float = 1.0) -> None:
        if not scale > 0:
            raise ValueError("time scale must be > 0")
        self.scale = scale

    def real_seconds(self, simulated_seconds: float) -> float:
        """How long a simulated pause lasts for real."""
        return simulated_seconds / self.scale

    def simulated_ns(self, real_ns: int) -> int:
        """A measured real duration as the simulated server reports it."""
        return int(real_ns * self.scale)

    def wall_ns_after(self, simulated_ns: int) -> int:
        """The real wall-clock instant `simulated_ns` from now (e.g. an `expires_at`)."""
        return time.time_ns() + int(simulated_ns / self.scale)
