"""Runner options (sched.go needsReload) and slots (llama-server's semaphore)."""

from __future__ import annotations

import asyncio

import pytest
from llm_emulator.runner import RunnerOptions, Slots, runner_options

BASE = runner_options({}, default_ctx=4096, trained_ctx=131072)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("num_ctx", 8192),
        ("num_batch", 1024),
        ("num_gpu", 20),
        ("main_gpu", 1),
        ("use_mmap", False),
        ("num_thread", 8),
    ],
)
def test_each_runner_option_forces_a_reload(option: str, value: object) -> None:
    """needsReload compares api.Runner: num_ctx, num_batch, num_gpu, main_gpu, use_mmap,
    num_thread (issues 8903, 10948)."""
    wanted = runner_options({option: value}, 4096, 131072)
    assert BASE.needs_reload(wanted)
    assert not wanted.needs_reload(wanted)


def test_what_does_not_force_a_reload() -> None:
    same = [
        {"temperature": 0, "seed": 3, "num_predict": 5, "top_k": 1},
        {"num_ctx": 4096, "num_batch": 512, "num_thread": 0},
        {"num_ctx": 4096.0},  # Go's FromMap truncates any JSON number
        {"num_gpu": -1},  # "as many layers as fit" never reloads (needsReload)
    ]
    for options in same:
        assert not BASE.needs_reload(runner_options(options, 4096, 131072)), options
    partial = runner_options({"num_gpu": 10}, 4096, 131072)
    assert not partial.needs_reload(runner_options({"num_gpu": -1}, 4096, 131072))


def test_num_ctx_is_clamped_like_ollama() -> None:
    """getRunner raises num_ctx to 4; the runner caps it at the trained context."""
    assert runner_options({"num_ctx": 1}, 4096, 131072).num_ctx == 4
    assert runner_options({"num_ctx": 100000}, 4096, 8192).num_ctx == 8192
    assert runner_options({}, 32768, 512) == RunnerOptions(num_ctx=512)


async def test_slots_are_fifo_and_a_leaving_waiter_gives_its_turn_away() -> None:
    """Go's semaphore.Weighted: waiters are served in order; a cancelled Acquire that
    was granted meanwhile releases again."""
    slots = Slots(1)
    await slots.take()
    order: list[int] = []

    async def waiter(number: int) -> None:
        await slots.take()
        order.append(number)

    tasks = [asyncio.ensure_future(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert slots.waiting == 3
    tasks[0].cancel()
    slots.give()
    await asyncio.sleep(0)
    slots.give()
    await asyncio.sleep(0)
    slots.give()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [1, 2]
    assert slots.free == 1
