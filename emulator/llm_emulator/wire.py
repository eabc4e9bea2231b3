"""Byte-level details of Ollama's responses: timestamps, content types, error bodies.

Ollama is a Go (gin) server: `c.JSON` writes compact JSON with no trailing newline and
`application/json; charset=utf-8`; streams are NDJSON lines; Go marshals `time.Time` as
RFC 3339 with nanoseconds, trailing zeros trimmed, `Z` for UTC.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

VERSION = "0.32.15"

JSON = b"application/json; charset=utf-8"
# The OpenAI layer re-encodes with json.Encoder: plain type, body ends with a newline.
OPENAI_JSON = b"application/json"
NDJSON = b"application/x-ndjson"
SSE = b"text/event-stream"
TEXT = b"text/plain; charset=utf-8"

# `created_at` is formatted for every chunk: the seconds part is cached per second.
_second_cache: list[Any] = [-1, ""]


def rfc3339_nano(ns: int) -> str:
    """Go's `time.Time` JSON form in UTC: `2024-08-08T21:34:10.54868145Z`."""
    seconds, frac = divmod(ns, 1_000_000_000)
    if _second_cache[0] != seconds:
        _second_cache[0] = seconds
        _second_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    head: str = _second_cache[1]
    if frac == 0:
        return head + "Z"
    return head + "." + f"{frac:09d}".rstrip("0") + "Z"


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def ollama_error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def openai_error_type(status: int) -> str:
    if status == 400:
        return "invalid_request_error"
    if status == 404:
        return "not_found_error"
    return "api_error"


def openai_error(status: int, message: str) -> bytes:
    body = {
        "error": {
            "message": message,
            "type": openai_error_type(status),
            "param": None,
            "code": None,
        }
    }
    return orjson.dumps(body) + b"\n"


def go_json_error(body: bytes, exc: orjson.JSONDecodeError) -> str:
    """An error message in the words of Go's encoding/json for a body it cannot parse."""
    pos = exc.pos
    stripped = body.strip()
    if pos >= len(body) or not stripped or pos >= len(body.rstrip()):
        return "unexpected EOF"
    char = body[pos : pos + 1].decode("latin-1")
    return f"invalid character {char!r} looking for beginning of value"


def go_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"
