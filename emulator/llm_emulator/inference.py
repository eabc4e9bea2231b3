"""What the generation endpoints share: request parsing helpers, timing stats, pacing.

Pacing follows the knobs: `first_token_delay` before the first byte of an answer,
`token_delay` between two tokens; streamed chunks are produced (with their own
`created_at`) and written one at a time, as a real model emits them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson

from llm_emulator.exchange import Exchange
from llm_emulator.state import Knobs
from llm_emulator.wire import go_json_error, go_type_name

# Go's time.ParseDuration units.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
FOREVER_NS = -1


class BadRequest(Exception):
    """A request Ollama rejects with 400 and this message."""


def parse_object(body: bytes, struct: str) -> dict[str, Any]:
    """The JSON object in `body`, or BadRequest worded like gin's ShouldBindJSON."""
    if not body.strip():
        raise BadRequest("missing request body")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(go_json_error(body, exc)) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(
            f"json: cannot unmarshal {go_type_name(value)} into Go value of type {struct}"
        )
    return value


def check_types(
    data: dict[str, Any], struct: str, fields: dict[str, type | tuple[type, ...]]
) -> None:
    """Go rejects a field of the wrong JSON type; null is always fine."""
    for name, expected in fields.items():
        value = data.get(name)
        if value is None:
            continue
        bad = not isinstance(value, expected) or (
            isinstance(value, bool) and bool not in _as_tuple(expected)
        )
        if bad:
            raise BadRequest(
                f"json: cannot unmarshal {go_type_name(value)} into Go struct field "
                f"{struct}.{name} of type {_go_name(expected)}"
            )


def _as_tuple(expected: type | tuple[type, ...]) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def _go_name(expected: type | tuple[type, ...]) -> str:
    first = _as_tuple(expected)[0]
    return {str: "string", bool: "bool", list: "[]", dict: "map[string]interface {}"}.get(
        first, "number"
    )


def parse_keep_alive(value: Any) -> int | None:
    """keep_alive in ns: None when absent, FOREVER_NS when negative (Go's api.Duration)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequest("json: cannot unmarshal bool into Go struct field of type api.Duration")
    if isinstance(value, int | float):
        return FOREVER_NS if value < 0 else int(value * 1_000_000_000)
    if isinstance(value, str):
        text = value.strip()
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        if body == "0":
            return 0
        total, pos = 0.0, 0
        for match in _DURATION_PART.finditer(body):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_NS[match.group(2)]
            pos = match.end()
        if pos != len(body) or not body:
            raise BadRequest(f'time: invalid duration "{value}"')
        return FOREVER_NS if sign < 0 else int(total)
    raise BadRequest(
        f"json: cannot unmarshal {go_type_name(value)} into Go value of type api.Duration"
    )


def options_of(data: dict[str, Any]) -> dict[str, Any]:
    options = data.get("options")
    return options if isinstance(options, dict) else {}


class Timing:
    """Wall-clock marks of one generation, turned into Ollama's nanosecond stats."""

    __slots__ = ("first_token_ns", "prompt_eval_ns", "start_ns")

    def __init__(self, start_ns: int, first_token_delay: float) -> None:
        self.start_ns = start_ns
        self.first_token_ns = 0
        self.prompt_eval_ns = int(first_token_delay * 1e9)

    def mark_first_token(self) -> None:
        if not self.first_token_ns:
            self.first_token_ns = time.time_ns()

    def stats(self, prompt_eval_count: int, eval_count: int) -> dict[str, int]:
        """The final chunk's stats, zero values left out as Go's omitempty does."""
        now = time.time_ns()
        first = self.first_token_ns or now
        load = max(first - self.start_ns - self.prompt_eval_ns, 1_000)
        prompt_eval = self.prompt_eval_ns or prompt_eval_count * 40_000
        evaluating = max(now - first, eval_count * 10_000)
        total = max(now - self.start_ns, load + prompt_eval + evaluating)
        stats = {"total_duration": total, "load_duration": load}
        if prompt_eval_count:
            stats["prompt_eval_count"] = prompt_eval_count
            stats["prompt_eval_duration"] = prompt_eval
        if eval_count:
            stats["eval_count"] = eval_count
            stats["eval_duration"] = evaluating
        return stats


async def wait_for_whole_answer(ex: Exchange, timing: Timing, knobs: Knobs, tokens: int) -> None:
    """A non-streamed answer is ready when its last token is."""
    await ex.pause(knobs.first_token_delay)
    timing.mark_first_token()
    await ex.pause(knobs.token_delay * max(tokens - 1, 0))


async def stream_chunks(
    ex: Exchange,
    content_type: bytes,
    chunks: Iterator[bytes],
    paced: int,
    first_token_delay: float,
    token_delay: float,
    error_chunk: Callable[[str], bytes],
) -> None:
    """Write `chunks` one by one; the first `paced` are tokens, `token_delay` apart.

    Armed stream faults act here: after `cut_after` chunks the connection is dropped
    without the final chunk; after `error_after` chunks an error line ends the stream.
    """
    faults = ex.faults
    await ex.pause(first_token_delay)
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
        if token_delay and index < paced:
            await asyncio.sleep(token_delay)
    if faults.cut_after is not None and index >= faults.cut_after:
        ex.abort()
        return
    await ex.end_stream()


async def apply_faults(
    ex: Exchange, streaming: bool, reject: Callable[[Exchange, int, str], Awaitable[None]]
) -> bool:
    """Draw this request's fault; True when that already answered it (or it hung)."""
    faults = ex.state.take_faults(ex.path, streaming)
    ex.faults = faults
    if faults.hang:
        await ex.hang()
        return True
    if faults.fail_status is not None:
        await reject(ex, faults.fail_status, faults.fail_message)
        return True
    return False
