"""One inference request's time on the emulated server, and the stats measured from it.

A request goes through the steps of Ollama's handlers: the scheduler hands it a runner
(`schedule`; the wait is `load_duration`, as routes.go measures it from the start of
the handler to the runner's arrival), it waits for one of the runner's slots (only
`total_duration` shows that wait), evaluates its prompt (`prompt_eval_duration`:
`first_token_delay` plus the prompt tokens its llama-server slot did not have cached, at
the model's prompt speed; see `prompt_cache.py`) and produces its
tokens (`eval_duration`: each token one decode step at the model's shared speed, plus
`token_delay` between two tokens). Streamed chunks are produced and written one at a
time as their tokens come out.

Every reported duration is measured, real time x the time scale; nothing is made up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from llm_emulator.catalog import ModelEntry
from llm_emulator.exchange import Exchange
from llm_emulator.scheduler import Lease


class Run:
    __slots__ = (
        "_answer",
        "_base",
        "_lease",
        "_prompt",
        "ex",
        "loaded_at",
        "prompt_done_at",
        "slot_at",
        "start",
        "tokens_wait",
    )

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.start = time.perf_counter_ns()
        self.loaded_at = self.slot_at = self.prompt_done_at = 0
        self._lease: Lease | None = None
        self._base = 0.0  # the GPU's work clock when decoding started
        # Whether tokens after the first take any time (set by prefill).
        self.tokens_wait = False
        # The prompt's and answer's tokens, for llama-server's slot caches.
        self._prompt: list[str] | None = None
        self._answer: list[str] = []

    def cache_prompt(self, prompt: list[str], answer: list[str]) -> None:
        """Evaluate only what the slot's cache lacks of `prompt`; `answer` is cached after."""
        self._prompt = prompt
        self._answer = answer

    @property
    def lease(self) -> Lease:
        if self._lease is None:
            raise RuntimeError("schedule() first")
        return self._lease

    async def schedule(
        self, entry: ModelEntry, options: Mapping[str, Any], keep_alive_ns: int | None
    ) -> None:
        """Get a runner (raises scheduler.Unavailable); it is held until the request ends."""
        scheduler = self.ex.state.scheduler
        got = scheduler.request(entry, options, keep_alive_ns)
        if not isinstance(got, Lease):
            self.ex.watch()  # a client leaving the queue must be noticed
            got = await scheduler.wait(got)
        self._lease = got
        self.ex.on_close = got.release
        self.loaded_at = time.perf_counter_ns()

    async def prefill(self, prompt_tokens: int) -> None:
        """A slot, then the prompt: first_token_delay plus the prompt's tokens."""
        ex = self.ex
        lease = self.lease
        if not lease.try_slot():
            ex.watch()
            await lease.wait_slot()
        self.slot_at = time.perf_counter_ns()
        state = ex.state
        delay = state.knobs.first_token_delay
        if delay:
            await ex.pause(state.clock.real_seconds(delay))
        evaluated = prompt_tokens
        if self._prompt is not None:
            evaluated = lease.use_cache(self._prompt).evaluated
            lease.generated = self._answer
        work = lease.runner.prompt_work * evaluated
        gpu = state.scheduler.gpu
        if work:
            ex.watch()
            await gpu.until(gpu.work_done() + work)
        self.prompt_done_at = time.perf_counter_ns()
        if lease.runner.decode_work:
            self._base = gpu.work_done()
            self.tokens_wait = True
        elif state.knobs.token_delay:
            self.tokens_wait = True

    async def token(self, number: int) -> None:
        """Wait until token `number` (1 = the first) is out."""
        state = self.ex.state
        delay = state.knobs.token_delay
        work = self.lease.runner.decode_work
        gpu = state.scheduler.gpu
        if number > 1 and delay:
            await asyncio.sleep(state.clock.real_seconds(delay))
            if work:  # the pause adds to the decode steps, it does not overlap them
                self._base = gpu.work_done() - (number - 1) * work
        if work:
            await gpu.until(self._base + number * work)

    async def whole(self, prompt_tokens: int, tokens: int) -> None:
        """A non-streamed answer is ready when its last token is."""
        await self.prefill(prompt_tokens)
        if not self.tokens_wait:
            return
        ex = self.ex
        state = ex.state
        work = self.lease.runner.decode_work * tokens
        if work:
            ex.watch()
            await state.scheduler.gpu.until(self._base + work)
        await ex.pause(state.clock.real_seconds(state.knobs.token_delay * max(tokens - 1, 0)))

    def stats(self, prompt_eval_count: int, eval_count: int) -> dict[str, int]:
        """The final chunk's stats, zero values left out as Go's omitempty does."""
        scale = self.ex.state.clock.scale
        now = time.perf_counter_ns()
        # Never 0: a zero duration would vanish from the JSON (omitempty).
        load = max(int((self.loaded_at - self.start) * scale), 1)
        prompt_eval = max(int((self.prompt_done_at - self.slot_at) * scale), 1)
        evaluating = max(int((now - self.prompt_done_at) * scale), 1)
        total = max(int((now - self.start) * scale), load + prompt_eval + evaluating)
        stats = {"total_duration": total, "load_duration": load}
        if prompt_eval_count:
            stats["prompt_eval_count"] = prompt_eval_count
            stats["prompt_eval_duration"] = prompt_eval
        if eval_count:
            stats["eval_count"] = eval_count
            stats["eval_duration"] = evaluating
        return stats


async def stream_chunks(
    run: Run,
    content_type: bytes,
    chunks: Iterator[bytes],
    prompt_tokens: int,
    paced: int,
    error_chunk: Callable[[str], bytes],
) -> None:
    """Write `chunks` one by one; the first `paced` are tokens, each when it is out.

    Armed stream faults act here: after `cut_after` chunks the connection is dropped
    without the final chunk; after `error_after` chunks an error line ends the stream.
    """
    ex = run.ex
    faults = ex.faults
    await run.prefill(prompt_tokens)
    if paced and run.tokens_wait:
        await run.token(1)
    # Ollama's headers go out with the first chunk.
    await ex.start_stream(content_type)
    index = 0
    for data in chunks:
        if faults.cut_after is not None and index >= faults.cut_after:
            ex.abort()
            return
        if faults.error_after is not None and index >= faults.error_after:
            await ex.end_stream(error_chunk(faults.error_message))
            return
        await ex.chunk(data)
        index += 1
        if index < paced and run.tokens_wait:
            await run.token(index + 1)
    if faults.cut_after is not None and index >= faults.cut_after:
        ex.abort()
        return
    await ex.end_stream()
