"""Converting a complete response between the forms a client may ask for.

Ollama's native API answers a streaming request with NDJSON chunks and a
non-streaming one with a single object whose text is the chunks' text joined and
whose stats are the final chunk's; the OpenAI layer does the same with SSE events.
These functions do that joining (or the reverse split into one content chunk and a
final chunk), so one cache entry serves both kinds of request. They run only when
the forms differ; a same-form hit replays the stored bytes untouched.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.vocabulary import Form, Kind

SSE_DONE = b"data: [DONE]\n\n"


def ndjson_lines(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.split(b"\n") if line.strip()]


def sse_events(body: bytes) -> list[dict[str, Any]]:
    events = []
    for block in body.split(b"\n\n"):
        block = block.strip()
        if not block.startswith(b"data:"):
            continue
        payload = block[5:].strip()
        if payload == b"[DONE]":
            break
        events.append(orjson.loads(payload))
    return events


def _join(chunks: list[dict[str, Any]], *path: str) -> str:
    parts = []
    for chunk in chunks:
        value: Any = chunk
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        if isinstance(value, str):
            parts.append(value)
    return "".join(parts)


def _ollama_single(kind: Kind, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    final = dict(chunks[-1])
    if kind is Kind.GENERATE:
        final["response"] = _join(chunks, "response")
        thinking = _join(chunks, "thinking")
        if thinking:
            final["thinking"] = thinking
        return final
    message: dict[str, Any] = dict(final.get("message") or {"role": "assistant"})
    message["content"] = _join(chunks, "message", "content")
    thinking = _join(chunks, "message", "thinking")
    if thinking:
        message["thinking"] = thinking
    calls = [c for chunk in chunks for c in (chunk.get("message") or {}).get("tool_calls") or []]
    if calls:
        message["tool_calls"] = calls
    final["message"] = message
    return final


def _ollama_stream(kind: Kind, single: dict[str, Any]) -> list[dict[str, Any]]:
    first: dict[str, Any] = {"model": single.get("model"), "created_at": single.get("created_at")}
    final = dict(single)
    if kind is Kind.GENERATE:
        first["response"] = single.get("response", "")
        if single.get("thinking"):
            first["thinking"] = single["thinking"]
            final.pop("thinking", None)
        final["response"] = ""
    else:
        message = dict(single.get("message") or {})
        first["message"] = message
        final["message"] = {"role": message.get("role", "assistant"), "content": ""}
    first["done"] = False
    return [first, final]


def _openai_single(kind: Kind, events: list[dict[str, Any]]) -> dict[str, Any] | None:
    usage = next((e["usage"] for e in events if e.get("usage")), None)
    content_events = [e for e in events if e.get("choices")]
    if usage is None or not content_events:
        return None  # a stream without usage cannot become a complete object
    head = content_events[0]
    finish = next(
        (
            c.get("finish_reason")
            for e in reversed(content_events)
            for c in e["choices"]
            if c.get("finish_reason")
        ),
        None,
    )
    out: dict[str, Any] = {"id": head.get("id")}
    if kind is Kind.OPENAI_CHAT:
        out["object"] = "chat.completion"
        message: dict[str, Any] = {
            "role": "assistant",
            "content": _join([e["choices"][0] for e in content_events], "delta", "content"),
        }
        reasoning = _join([e["choices"][0] for e in content_events], "delta", "reasoning")
        if reasoning:
            message["reasoning"] = reasoning
        calls = [
            call
            for e in content_events
            for call in (e["choices"][0].get("delta") or {}).get("tool_calls") or []
        ]
        if calls:
            message["tool_calls"] = calls
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
    else:
        out["object"] = "text_completion"
        text = _join([e["choices"][0] for e in content_events], "text")
        choice = {"text": text, "index": 0, "finish_reason": finish}
    out["created"] = head.get("created")
    out["model"] = head.get("model")
    out["system_fingerprint"] = head.get("system_fingerprint")
    out["choices"] = [choice]
    out["usage"] = usage
    return out


def _openai_stream(kind: Kind, single: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    base = {
        "id": single.get("id"),
        "object": "chat.completion.chunk" if kind is Kind.OPENAI_CHAT else "text_completion",
        "created": single.get("created"),
        "model": single.get("model"),
        "system_fingerprint": single.get("system_fingerprint"),
    }
    choice = (single.get("choices") or [{}])[0]
    finish = choice.get("finish_reason")
    if kind is Kind.OPENAI_CHAT:
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant", "content": message.get("content", "")}
        if message.get("reasoning"):
            delta["reasoning"] = message["reasoning"]
        if message.get("tool_calls"):
            delta["tool_calls"] = message["tool_calls"]
        body = {"index": 0, "delta": delta, "finish_reason": None}
        end = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": finish}
    else:
        body = {"text": choice.get("text", ""), "index": 0, "finish_reason": None}
        end = {"text": "", "index": 0, "finish_reason": finish}
    events = [{**base, "choices": [body]}, {**base, "choices": [end]}]
    if include_usage and single.get("usage"):
        events.append({**base, "choices": [], "usage": single["usage"]})
    return events


def _encode_ndjson(objects: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objects)


def _encode_sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + SSE_DONE


def _filter_usage(body: bytes, include_usage: bool) -> bytes | None:
    events = sse_events(body)
    has_usage = any(e.get("usage") and not e.get("choices") for e in events)
    if include_usage and not has_usage:
        return None
    if include_usage or not has_usage:
        return body
    return _encode_sse([e for e in events if e.get("choices") or not e.get("usage")])


def convert(
    kind: Kind, stored: Form, body: bytes, wanted: Form, include_usage: bool = False
) -> bytes | None:
    """`body` (a complete response in form `stored`) in form `wanted`; None if impossible."""
    try:
        if stored is wanted:
            return _filter_usage(body, include_usage) if wanted is Form.SSE else body
        if kind.is_openai:
            single = (
                orjson.loads(body)
                if stored is Form.JSON
                else _openai_single(kind, sse_events(body))
            )
            if single is None:
                return None
            if wanted is Form.JSON:
                return orjson.dumps(single)
            return _encode_sse(_openai_stream(kind, single, include_usage))
        if stored is Form.NDJSON and wanted is Form.JSON:
            return orjson.dumps(_ollama_single(kind, ndjson_lines(body)))
        if stored is Form.JSON and wanted is Form.NDJSON:
            return _encode_ndjson(_ollama_stream(kind, orjson.loads(body)))
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return None
