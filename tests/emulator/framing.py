"""Strict readers of the stream framings, and a bounded poll for counters."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson


def ndjson(body: bytes) -> list[dict[str, Any]]:
    """Strict NDJSON: every line one JSON object, newline-terminated, no blank lines."""
    assert body.endswith(b"\n")
    lines = body[:-1].split(b"\n")
    assert all(lines), "blank line in an NDJSON stream"
    return [orjson.loads(line) for line in lines]


def sse(body: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body framed as `data: ...\\n\\n`."""
    assert body.endswith(b"\n\n")
    events = body[:-2].split(b"\n\n")
    assert all(e.startswith(b"data: ") for e in events)
    return [e[len(b"data: ") :] for e in events]


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")
