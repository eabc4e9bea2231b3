"""A request's reported durations are the time it really spent, in simulated time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from llm_emulator import EmulatorSettings, create_app

from tests.emulator.inproc import emulator, ollama, seconds

DURATIONS = ("load_duration", "prompt_eval_duration", "eval_duration", "total_duration")


def durations(reply: dict[str, Any]) -> dict[str, float]:
    return {name: seconds(reply[name]) for name in DURATIONS}


async def _scenario(scale: float) -> tuple[dict[str, float], float]:
    """A cold request: 3 s load, 1 s first-token delay, 60 prompt tokens at 100/s, 20
    tokens at 50/s. Returns its reported durations and the real time it took."""
    settings = ollama(model_load_times={"llama3.2": 3}, prompt_speed=100.0, decode_speed=50.0)
    async with emulator(settings, scale=scale, first_token_delay=1) as emu:
        started = time.monotonic()
        reply = await emu.ok("llama3.2", " ".join(["word"] * 55), options={"num_predict": 20})
        real = time.monotonic() - started
    assert reply["prompt_eval_count"] == 60
    assert reply["eval_count"] == 20
    return durations(reply), real


async def test_reported_durations_are_the_time_spent_scaled() -> None:
    """routes.go: load_duration is the wait for the scheduler's runner, total_duration
    the whole handler; prompt and eval durations are the runner's own timings."""
    reported, real = await _scenario(scale=10)
    assert reported["load_duration"] >= 3
    assert reported["prompt_eval_duration"] >= 1 + 0.6
    assert reported["eval_duration"] >= 20 / 50
    parts = reported["load_duration"] + reported["prompt_eval_duration"]
    assert reported["total_duration"] >= parts + reported["eval_duration"]
    # The total is the real time taken, times the scale (the client saw a bit more).
    assert reported["total_duration"] / 10 <= real < reported["total_duration"] / 10 + 0.25


async def test_time_scale_preserves_ratios() -> None:
    """The same traffic at 5x and 25x reports the same simulated durations."""
    slow, slow_real = await _scenario(scale=5)
    fast, fast_real = await _scenario(scale=25)
    for name in DURATIONS:
        assert abs(slow[name] - fast[name]) <= 0.25 * slow[name] + 0.5, name
    assert fast_real < slow_real


async def test_slots_share_the_gpu() -> None:
    """speed.py: batched slots of one model slow each other by decode_slowdown each;
    slots of different models take turns."""
    settings = ollama(num_parallel=4, decode_speed=100.0, decode_slowdown=0.15)
    options = {"num_predict": 50}
    async with emulator(settings, scale=4) as emu:
        for model in ("llama3.2", "llama3.2:1b"):
            await emu.load(model)
        alone = seconds((await emu.ok("llama3.2", options=options))["eval_duration"])
        four = await asyncio.gather(*(emu.ok("llama3.2", options=options) for _ in range(4)))
        two = await asyncio.gather(
            emu.ok("llama3.2", options=options), emu.ok("llama3.2:1b", options=options)
        )
    # Measured durations: a timer may end its wait a hair early, as in the bounds below.
    assert 0.5 * 0.9 <= alone < 0.7
    for reply in four:  # 1 + 0.15 x 3 = 1.45 times slower each
        assert 0.5 * 1.45 * 0.9 <= seconds(reply["eval_duration"]) < 0.5 * 1.45 * 1.3
    for reply in two:  # two models take turns: twice as slow each
        assert 0.5 * 2 * 0.9 <= seconds(reply["eval_duration"]) < 0.5 * 2 * 1.3


async def test_num_predict_and_max_tokens_set_the_token_count() -> None:
    async with emulator(ollama(), tokens=3) as emu:
        longer = await emu.ok("llama3.2", options={"num_predict": 12})
        default = await emu.ok("llama3.2")
        body = {"model": "llama3.2", "prompt": "x", "max_tokens": 5}
        v1 = (await emu.client.post("/v1/completions", json=body)).json()
    assert (longer["eval_count"], longer["done_reason"]) == (12, "length")
    assert (default["eval_count"], default["done_reason"]) == (3, "stop")
    assert v1["usage"]["completion_tokens"] == 5


async def test_no_task_per_request_when_nothing_waits() -> None:
    """Without scheduler limits a request for a loaded model awaits nothing and creates
    no task: the gateway benchmark drives the emulator at >10,000 requests/s."""
    app = create_app(EmulatorSettings())
    body = b'{"model": "llama3.2", "prompt": "x", "stream": false}'

    async def call() -> int:
        sent: list[dict[str, Any]] = []
        scope = {"type": "http", "method": "POST", "path": "/api/generate", "headers": []}
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # the client stays until the answer is sent
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(dict(message))

        await app(scope, receive, send)
        status: int = sent[0]["status"]
        return status

    assert await call() == 200  # loads the model
    loop = asyncio.get_running_loop()
    created = []
    previous = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        created.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        statuses = [await call() for _ in range(20)]
    finally:
        loop.set_task_factory(previous)
    assert statuses == [200] * 20
    assert created == []
    assert app.state.scheduler.counters.served == {"llama3.2:latest": 21}
