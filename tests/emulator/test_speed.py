"""The simulated GPU: offload penalty and slots sharing its speed."""

from __future__ import annotations

import time

import pytest
from llm_emulator.clock import SimClock
from llm_emulator.speed import CPU_PENALTY, Gpu, offload_factor, work_per_token


def test_offload_factor() -> None:
    assert offload_factor(100, 100) == 1.0
    assert offload_factor(100, 0) == pytest.approx(1 / CPU_PENALTY)
    # Half on the GPU: the CPU half dominates.
    assert offload_factor(100, 50) == pytest.approx(1 / (0.5 + 0.5 * CPU_PENALTY))
    assert work_per_token(0, 1.0) == 0.0
    assert work_per_token(100, 0.5) == pytest.approx(0.02)


def test_load_is_one_per_model_plus_slowdown_per_extra_slot() -> None:
    gpu = Gpu(SimClock(), slowdown=0.15)
    a, b = object(), object()
    gpu.join(a)
    assert gpu.load == 1.0
    gpu.join(a)
    assert gpu.load == pytest.approx(1.15)
    gpu.join(b)
    assert gpu.load == pytest.approx(2.15)
    gpu.leave(a)
    gpu.leave(a)
    assert gpu.load == 1.0
    gpu.leave(b)
    assert gpu.load == 0.0


async def test_work_advances_at_one_over_load() -> None:
    gpu = Gpu(SimClock(20), slowdown=0.0)
    a, b = object(), object()
    gpu.join(a)
    gpu.join(b)
    started = time.monotonic()
    await gpu.until(gpu.work_done() + 2.0)  # 2 s of exclusive GPU time, GPU shared by 2
    elapsed = (time.monotonic() - started) * 20
    assert 4.0 - 0.1 <= elapsed < 6.0
