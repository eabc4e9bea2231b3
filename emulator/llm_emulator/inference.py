"""What the inference endpoints share: request parsing helpers and drawing faults.

The time a request takes (scheduling, slot, prompt, tokens) is `pacing.py`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from llm_emulator.durations import FOREVER_NS, parse_go_duration
from llm_emulator.exchange import Exchange
from llm_emulator.wire import go_json_error, go_type_name


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
        try:
            return parse_go_duration(value)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    raise BadRequest(
        f"json: cannot unmarshal {go_type_name(value)} into Go value of type api.Duration"
    )


def options_of(data: dict[str, Any]) -> dict[str, Any]:
    options = data.get("options")
    return options if isinstance(options, dict) else {}


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
