"""The multi-turn client of W5: each conversation a closed loop, conversations open.

A conversation starts at its planned instant whatever the others do; within it each
turn waits for the previous answer and the think time after it, as a person would.
Every turn sends the whole history: the shared system prompt, every question so far
and every answer as it was streamed back (so the prefix the server cached with the
last answer is the next prompt's prefix). A turn that fails ends its conversation (the
user gives up). Outcomes are per turn: stream 0 for first turns, 1 for follow-ups.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import orjson

from bench.system.chats import MODEL, NUM_PREDICT, ChatPlan, Conversation
from bench.system.loadgen import (
    Limits,
    LoadResult,
    Outcome,
    Sampler,
    sample_loop,
    send_one,
    watch_lag,
)
from bench.system.workloads import Planned

KEY = "chat"
FIRST, FOLLOW_UP = 0, 1


def body(template: str, history: Sequence[dict[str, str]], question: str) -> bytes:
    messages = [
        {"role": "system", "content": template},
        *history,
        {"role": "user", "content": question},
    ]
    options = {"num_predict": NUM_PREDICT, "temperature": 0.7}
    return orjson.dumps({"model": MODEL, "messages": messages, "stream": True, "options": options})


class _Turns:
    """Numbers turns in the order they are sent."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next - 1


async def _conversation(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    plan: ChatPlan,
    conversation: Conversation,
    scale: float,
    limits: Limits,
    t0: float,
    counter: _Turns,
    into: list[Outcome],
    replica: int,
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(t0 + conversation.at / scale - loop.time(), 0.0))
    template = plan.templates[conversation.template]
    history: list[dict[str, str]] = []
    for number, turn in enumerate(conversation.turns):
        if number:
            await asyncio.sleep(turn.think / scale)
        index = counter.take()
        stream = FIRST if number == 0 else FOLLOW_UP
        planned = Planned(
            index, 0.0, stream, KEY, MODEL, "/api/chat",
            body(template, history, turn.question), None,
        )  # fmt: skip
        outcome = Outcome(index, KEY, MODEL, stream, None, replica, loop.time() - t0)
        outcome.conversation, outcome.turn = conversation.index, number
        into.append(outcome)
        answer: list[str] = []
        await send_one(session, url, key, planned, outcome, limits, t0, answer)
        if outcome.kind != "completed":
            return
        history.append({"role": "user", "content": turn.question})
        history.append({"role": "assistant", "content": "".join(answer)})


async def run_chats(
    plan: ChatPlan,
    route: Callable[[Conversation], tuple[int, str]],
    key: str,
    scale: float,
    limits: Limits,
    *,
    sampler: Sampler | None = None,
    sample_every: float = 1.0,
) -> LoadResult:
    """Run every conversation of `plan`; `route` gives a conversation's (replica, URL)."""
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    outcomes: list[Outcome] = []
    lags: list[float] = []
    samples: list[dict[str, Any]] = []
    stalls: list[tuple[float, float]] = []
    counter = _Turns()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = loop.time()
        background = [asyncio.create_task(watch_lag(lags, stalls, t0))]
        if sampler is not None:
            background.append(
                asyncio.create_task(sample_loop(session, sampler, sample_every, t0, samples))
            )
        tasks = []
        for conversation in plan.conversations:
            replica, url = route(conversation)
            tasks.append(
                asyncio.create_task(
                    _conversation(
                        session, url, key, plan, conversation, scale, limits, t0, counter,
                        outcomes, replica,
                    )
                )
            )  # fmt: skip
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, *background]:
                task.cancel()
            await asyncio.gather(*tasks, *background, return_exceptions=True)
        ends = [o.ended for o in outcomes if o.ended is not None]
        span = max(ends, default=loop.time() - t0)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    outcomes.sort(key=lambda o: o.index)
    return LoadResult(outcomes, span, lags, [], stalls, cpu, samples)
