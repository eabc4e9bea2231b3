"""Is a response complete and successful (worth storing), and what did it cost in tokens?

Only the tail is parsed: Ollama ends every stream with its final chunk (or an error
line), and the OpenAI layer with usage and `[DONE]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from llm_gateway.vocabulary import Form, Kind

_SSE_DONE = b"data: [DONE]"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    generated_tokens: int
    # Ollama's eval_duration in seconds; 0 when the API does not report it (OpenAI).
    generation_seconds: float

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.generated_tokens


def _last_json_line(body: bytes) -> dict[str, Any] | None:
    tail = body.rstrip(b"\n")
    line = tail[tail.rfind(b"\n") + 1 :]
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _last_sse_event(body: bytes) -> dict[str, Any] | None:
    events = body.rstrip().split(b"\n\n")
    for block in reversed(events):
        block = block.strip()
        if block.startswith(b"data:") and block != _SSE_DONE:
            try:
                value = orjson.loads(block[5:])
            except orjson.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def final_object(form: Form, body: bytes) -> dict[str, Any] | None:
    if form is Form.SSE:
        return _last_sse_event(body)
    return _last_json_line(body)


def is_complete(kind: Kind, form: Form, status: int, body: bytes) -> bool:
    """HTTP 200, ended the way a finished answer ends, no error in the tail."""
    if status != 200 or not body:
        return False
    if form is Form.SSE:
        if not body.rstrip().endswith(_SSE_DONE):
            return False
        last = _last_sse_event(body)
        return last is not None and "error" not in last
    last = final_object(form, body)
    if last is None or "error" in last:
        return False
    if kind.is_embedding:
        return True
    if kind.is_openai:
        return bool(last.get("choices"))
    return last.get("done") is True


def _count(value: Any) -> int:
    """A token count from the upstream's answer; anything but a number counts 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value)


def usage_of(kind: Kind, form: Form, body: bytes) -> Usage | None:
    last = final_object(form, body)
    if last is None:
        return None
    usage = last.get("usage")
    if isinstance(usage, dict):
        return Usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")), 0)
    if kind.is_openai or ("eval_count" not in last and "prompt_eval_count" not in last):
        return None
    return Usage(
        _count(last.get("prompt_eval_count")),
        _count(last.get("eval_count")),
        _count(last.get("eval_duration")) / 1e9,
    )
