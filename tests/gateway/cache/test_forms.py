"""One cache entry serves streaming and non-streaming clients: conversions between forms."""

from __future__ import annotations

import orjson
import pytest
from llm_gateway.cache.completeness import is_complete, usage_of
from llm_gateway.cache.entry import Entry
from llm_gateway.cache.forms import convert, ndjson_lines, sse_events
from llm_gateway.vocabulary import Form, Kind

STATS = {
    "total_duration": 5_000_000,
    "load_duration": 1_000_000,
    "prompt_eval_count": 3,
    "prompt_eval_duration": 500_000,
    "eval_count": 3,
    "eval_duration": 2_000_000,
}


def generate_stream() -> bytes:
    chunks = [
        {"model": "m", "created_at": "2026-11-27T00:00:00.1Z", "response": word, "done": False}
        for word in ("Hello", " big", " world")
    ]
    final = {
        "model": "m",
        "created_at": "2026-11-27T00:00:00.2Z",
        "response": "",
        "done": True,
        "done_reason": "stop",
        "context": [1, 2, 3],
        **STATS,
    }
    return b"".join(orjson.dumps(c) + b"\n" for c in [*chunks, final])


def chat_stream() -> bytes:
    chunks = [
        {
            "model": "m",
            "created_at": "2026-11-27T00:00:00.1Z",
            "message": {"role": "assistant", "content": word},
            "done": False,
        }
        for word in ("Hi", " there")
    ]
    final = {
        "model": "m",
        "created_at": "2026-11-27T00:00:00.2Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": "stop",
        "done": True,
        **STATS,
    }
    return b"".join(orjson.dumps(c) + b"\n" for c in [*chunks, final])


def test_ndjson_to_single_object_joins_text_and_keeps_final_stats() -> None:
    single = orjson.loads(convert(Kind.GENERATE, Form.NDJSON, generate_stream(), Form.JSON) or b"")
    assert single["response"] == "Hello big world"
    assert single["done"] is True
    assert single["context"] == [1, 2, 3]
    assert single["eval_count"] == 3
    assert single["created_at"] == "2026-11-27T00:00:00.2Z"
    assert list(single)[:4] == ["model", "created_at", "response", "done"]

    chat = orjson.loads(convert(Kind.CHAT, Form.NDJSON, chat_stream(), Form.JSON) or b"")
    assert chat["message"] == {"role": "assistant", "content": "Hi there"}
    assert chat["done_reason"] == "stop"


def test_single_object_to_stream_and_back_is_lossless() -> None:
    single = convert(Kind.CHAT, Form.NDJSON, chat_stream(), Form.JSON)
    assert single is not None
    stream = convert(Kind.CHAT, Form.JSON, single, Form.NDJSON)
    assert stream is not None
    lines = ndjson_lines(stream)
    assert lines[0]["done"] is False
    assert lines[-1]["done"] is True
    assert "".join(line["message"]["content"] for line in lines) == "Hi there"
    assert convert(Kind.CHAT, Form.NDJSON, stream, Form.JSON) == single


def test_same_form_is_replayed_byte_for_byte() -> None:
    body = generate_stream()
    assert convert(Kind.GENERATE, Form.NDJSON, body, Form.NDJSON) is body


def openai_chat_sse(with_usage: bool) -> bytes:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "system_fingerprint": "fp_ollama"}  # fmt: skip
    events = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                              "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": " you"},
                              "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                              "finish_reason": "stop"}]},
    ]  # fmt: skip
    if with_usage:
        usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
        events.append({**base, "choices": [], "usage": usage})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def test_openai_stream_with_usage_becomes_a_completion_and_back() -> None:
    single = convert(Kind.OPENAI_CHAT, Form.SSE, openai_chat_sse(True), Form.JSON)
    assert single is not None
    completion = orjson.loads(single)
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "Hi you"}
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["total_tokens"] == 6
    again = convert(Kind.OPENAI_CHAT, Form.JSON, single, Form.SSE, include_usage=True)
    assert again is not None
    assert again.endswith(b"data: [DONE]\n\n")
    events = sse_events(again)
    assert "".join(e["choices"][0]["delta"]["content"] for e in events if e["choices"]) == "Hi you"
    assert events[-1]["usage"]["total_tokens"] == 6
    without = convert(Kind.OPENAI_CHAT, Form.JSON, single, Form.SSE, include_usage=False)
    assert without is not None
    assert all(e["choices"] for e in sse_events(without))


def test_openai_stream_without_usage_cannot_become_a_completion() -> None:
    assert convert(Kind.OPENAI_CHAT, Form.SSE, openai_chat_sse(False), Form.JSON) is None
    # ... nor serve a stream that asks for usage; but one that does not, yes.
    assert convert(Kind.OPENAI_CHAT, Form.SSE, openai_chat_sse(False), Form.SSE, True) is None
    body = openai_chat_sse(False)
    assert convert(Kind.OPENAI_CHAT, Form.SSE, body, Form.SSE, False) is body
    stripped = convert(Kind.OPENAI_CHAT, Form.SSE, openai_chat_sse(True), Form.SSE, False)
    assert stripped is not None
    assert b'"usage"' not in stripped


@pytest.mark.parametrize(
    ("kind", "form", "status", "body", "complete"),
    [
        (Kind.GENERATE, Form.NDJSON, 200, generate_stream(), True),
        (Kind.GENERATE, Form.NDJSON, 500, generate_stream(), False),
        (Kind.GENERATE, Form.NDJSON, 200, generate_stream().rsplit(b"\n", 2)[0] + b"\n", False),
        (Kind.GENERATE, Form.NDJSON, 200, generate_stream() + b'{"error":"boom"}\n', False),
        (Kind.CHAT, Form.NDJSON, 200, chat_stream(), True),
        (Kind.EMBED, Form.JSON, 200, b'{"model":"m","embeddings":[[0.1]]}', True),
        (Kind.EMBED, Form.JSON, 200, b'{"error":"x"}', False),
        (Kind.OPENAI_CHAT, Form.SSE, 200, openai_chat_sse(True), True),
        (Kind.OPENAI_CHAT, Form.SSE, 200, openai_chat_sse(True)[:-15], False),
        (
            Kind.OPENAI_CHAT,
            Form.SSE,
            200,
            b'data: {"error":{"message":"x"}}\n\ndata: [DONE]\n\n',
            False,
        ),
        (Kind.GENERATE, Form.JSON, 200, b"", False),
    ],
)
def test_completeness(kind: Kind, form: Form, status: int, body: bytes, complete: bool) -> None:
    assert is_complete(kind, form, status, body) is complete


def test_usage_from_final_chunk_and_from_openai_usage() -> None:
    usage = usage_of(Kind.GENERATE, Form.NDJSON, generate_stream())
    assert usage is not None
    assert (usage.prompt_tokens, usage.generated_tokens) == (3, 3)
    assert usage.generation_seconds == pytest.approx(0.002)
    openai = usage_of(Kind.OPENAI_CHAT, Form.SSE, openai_chat_sse(True))
    assert openai is not None
    assert openai.generated_tokens == 2


def test_entry_encoding_round_trip_and_garbage() -> None:
    entry = Entry(
        Form.SSE, b"data: x\n\n", stored_at_ms=1_700_000_000_000, fresh_until_ms=1_700_000_060_000
    )
    decoded = Entry.decode(entry.encode())
    assert decoded == entry
    assert decoded.is_fresh(1_700_000_059_999)
    assert not decoded.is_fresh(1_700_000_060_000)
    assert decoded.age_seconds(1_700_000_005_500) == 5
    assert Entry.decode(b"junk") is None
    assert Entry.decode(b"LC1" + b"x" * 40) is None
