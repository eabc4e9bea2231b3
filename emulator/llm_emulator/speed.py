"""How fast the simulated GPU computes when several slots share it.

The model, simple on purpose:

- A slot alone on the GPU runs at its model's speed (tokens/s, prompt or decode).
- Busy slots of one model are batched: a decode step reads the weights once for all of
  them, so n busy slots of a model make each step `1 + slowdown x (n - 1)` times longer
  (llama.cpp's parallel decoding: 4 slots of an 8B model each run at about 70% of one
  slot alone, i.e. slowdown ~0.15, throughput ~2.9x).
- Different models take turns on the GPU: its load is the sum, over models with busy
  slots, of that factor; every busy slot progresses at 1/load of its speed alone.
- A model partly in system RAM (size_vram < size) runs its CPU share CPU_PENALTY times
  slower (system RAM has about a tenth of a GPU's memory bandwidth).

Implemented as processor sharing with one virtual clock: `work_done()` counts the
seconds of exclusive GPU time each busy slot has received so far; it advances by 1/load
per simulated second. A request waits until the clock passes its own target.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable

from llm_emulator.clock import SimClock

CPU_PENALTY = 10.0
# A waiting slot wakes at least this often (real seconds) to notice the GPU got faster.
_RECHECK_SECONDS = 0.01
# Work due within this much real time counts as done: uvloop's timers tick in whole
# milliseconds, and targets are absolute, so this never accumulates.
_EARLY_SECONDS = 0.0005


def offload_factor(size: int, vram: int) -> float:
    """Speed of a model with `vram` of its `size` bytes on the GPU, relative to all of it."""
    if size <= 0 or vram >= size:
        return 1.0
    on_gpu = max(vram, 0) / size
    return 1.0 / (on_gpu + (1.0 - on_gpu) * CPU_PENALTY)


def work_per_token(tokens_per_second: float, factor: float) -> float:
    """Exclusive GPU seconds one token takes; 0 when the speed is unlimited."""
    if tokens_per_second <= 0:
        return 0.0
    return 1.0 / (tokens_per_second * factor)


class Gpu:
    __slots__ = ("_at", "_busy", "_busy_s", "_clock", "_load", "_slowdown", "_work")

    def __init__(self, clock: SimClock, slowdown: float) -> None:
        self._clock = clock
        self._slowdown = slowdown
        self._busy: dict[Hashable, int] = {}
        self._load = 0.0
        self._work = 0.0
        self._busy_s = 0.0  # simulated seconds with any slot computing
        self._at = time.perf_counter()

    @property
    def load(self) -> float:
        return self._load

    def _advance(self) -> None:
        now = time.perf_counter()
        if self._load > 0:
            elapsed = (now - self._at) * self._clock.scale
            self._work += elapsed / self._load
            self._busy_s += elapsed
        self._at = now

    def join(self, model: Hashable) -> None:
        """A slot of `model` starts computing."""
        self._advance()
        busy = self._busy.get(model, 0)
        self._busy[model] = busy + 1
        self._load += 1.0 if busy == 0 else self._slowdown

    def leave(self, model: Hashable) -> None:
        self._advance()
        busy = self._busy.pop(model) - 1
        if busy:
            self._busy[model] = busy
        # Recomputed rather than decremented, so float drift never leaves a ghost load.
        self._load = sum(1.0 + self._slowdown * (n - 1) for n in self._busy.values())

    def busy_seconds(self) -> float:
        """Simulated seconds so far with at least one slot computing."""
        self._advance()
        return self._busy_s

    def work_done(self) -> float:
        self._advance()
        return self._work

    async def until(self, target: float) -> None:
        """Wait until each busy slot has had `target` seconds of exclusive GPU time."""
        while True:
            remaining = (target - self.work_done()) * max(self._load, 1.0)
            real = self._clock.real_seconds(remaining)
            if real <= _EARLY_SECONDS:
                return
            await asyncio.sleep(min(real, _RECHECK_SECONDS))
