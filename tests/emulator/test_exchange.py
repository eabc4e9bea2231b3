"""The emulator's pauses end at their deadline, never before (uvloop's timers may)."""

from __future__ import annotations

import time

import uvloop
from llm_emulator.exchange import precise_sleep


def test_precise_sleep_never_ends_early_on_uvloop() -> None:
    async def sleeps() -> list[float]:
        short = []
        for seconds in [0.0005, 0.001, 0.0031, 0.0107, 0.05] * 6:
            started = time.perf_counter()
            await precise_sleep(seconds)
            short.append(time.perf_counter() - started - seconds)
        return short

    assert min(uvloop.run(sleeps())) >= 0
