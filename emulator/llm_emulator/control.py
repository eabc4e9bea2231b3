"""The control API under /_emulator/: counters, knobs, faults, model digests, scheduler.

Not part of Ollama's API; tests and benchmarks drive the emulator through it. Control
requests are not counted and never draw faults.

`GET /_emulator/scheduler` shows the scheduler's true state: what is loaded (size,
VRAM, options, requests in flight and waiting for a slot, keep-alive, victim or not),
the pending queue, the load in progress, and counters (loads, reloads forced by other
runner options, evictions, unloads, keep-alive expiries, aborted loads, 503s). Real
Ollama exposes none of this (issues 2004, 3144): it is for tests and benchmarks only,
and the gateway must never depend on it; it routes on what Ollama shows (/api/ps,
load_duration) and on its own counts.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_emulator.exchange import Exchange
from llm_emulator.state import INFERENCE_PATHS
from llm_emulator.wire import JSON

PREFIX = "/_emulator/"

# knob -> integer?
_KNOBS = {"tokens": True, "first_token_delay": False, "token_delay": False}
_FAULT_INTS = (
    "fail_next",
    "fail_status",
    "cut_next",
    "cut_after",
    "error_next",
    "error_after",
    "hang_next",
)


class ControlError(Exception):
    pass


def _object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ControlError(f"body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ControlError("body must be a JSON object")
    return value


def _number(data: dict[str, Any], name: str, integer: bool) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        raise ControlError(f"{name} must be {'an integer' if integer else 'a number'}")
    if value < 0:
        raise ControlError(f"{name} must be >= 0")
    return value


def _configure(ex: Exchange, data: dict[str, Any]) -> dict[str, Any]:
    unknown = set(data) - set(_KNOBS)
    if unknown:
        raise ControlError(f"unknown knobs: {sorted(unknown)}")
    values = {
        name: _number(data, name, integer) for name, integer in _KNOBS.items() if name in data
    }
    knobs = ex.state.knobs
    for name, value in values.items():
        setattr(knobs, name, int(value) if _KNOBS[name] else float(value))
    return {
        "tokens": knobs.tokens,
        "first_token_delay": knobs.first_token_delay,
        "token_delay": knobs.token_delay,
    }


def _arm(ex: Exchange, data: dict[str, Any]) -> dict[str, Any]:
    known = {*_FAULT_INTS, "fail_message", "error_message", "paths"}
    unknown = set(data) - known
    if unknown:
        raise ControlError(f"unknown faults: {sorted(unknown)}")
    faults = ex.state.faults
    for name in _FAULT_INTS:
        if name not in data:
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ControlError(f"{name} must be an integer")
        if value < 0 and not (name == "hang_next" and value == -1):
            raise ControlError(f"{name} must be >= 0 (hang_next may be -1: hang everything)")
        if name == "fail_status" and not 400 <= value <= 599:
            raise ControlError("fail_status must be an HTTP error status (400-599)")
        setattr(faults, name, value)
    for name in ("fail_message", "error_message"):
        if name in data:
            if not isinstance(data[name], str) or not data[name]:
                raise ControlError(f"{name} must be a non-empty string")
            setattr(faults, name, data[name])
    if "paths" in data:
        paths = data["paths"]
        if paths is None:
            faults.paths = INFERENCE_PATHS
        elif isinstance(paths, list) and all(
            isinstance(p, str) and p.startswith("/") for p in paths
        ):
            faults.paths = tuple(paths)
        else:
            raise ControlError("paths must be a list of paths like '/api/tags' (or null)")
    return ex.state.faults_view()


def _set_model(ex: Exchange, data: dict[str, Any]) -> dict[str, Any]:
    name, digest = data.get("name"), data.get("digest")
    if not isinstance(name, str) or not isinstance(digest, str):
        raise ControlError('give {"name": "<model>", "digest": "<64 hex>"}')
    try:
        entry = ex.state.catalog.set_digest(name, digest)
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    return {"name": entry.name, "digest": entry.digest}


async def handle(ex: Exchange) -> None:
    action = ex.path[len(PREFIX) :]
    state = ex.state
    try:
        if ex.method == "GET" and action == "stats":
            result: dict[str, Any] = state.stats()
        elif ex.method == "GET" and action == "config":
            knobs = state.knobs
            result = {
                "tokens": knobs.tokens,
                "first_token_delay": knobs.first_token_delay,
                "token_delay": knobs.token_delay,
            }
        elif ex.method == "GET" and action == "faults":
            result = state.faults_view()
        elif ex.method == "GET" and action == "scheduler":
            result = state.scheduler.view()
        elif ex.method == "POST" and action == "reset":
            state.reset()
            result = {"reset": True}
        elif ex.method == "POST" and action == "config":
            result = _configure(ex, _object(await ex.read_body()))
        elif ex.method == "POST" and action == "faults":
            result = _arm(ex, _object(await ex.read_body()))
        elif ex.method == "POST" and action == "models":
            result = _set_model(ex, _object(await ex.read_body()))
        else:
            await ex.respond(
                404, orjson.dumps({"error": f"no control action {ex.method} {ex.path}"}), JSON
            )
            return
    except ControlError as exc:
        await ex.respond(400, orjson.dumps({"error": str(exc)}), JSON)
        return
    await ex.respond(200, orjson.dumps(result), JSON)
