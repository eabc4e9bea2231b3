"""Raw HTTP checks of the wire format against what Ollama 0.32.15 sends."""

from __future__ import annotations

import re

import httpx
import orjson
import pytest

from tests.emulator.framing import ndjson, sse

JSON = "application/json; charset=utf-8"
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
STATS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)
T0 = {"temperature": 0}


def test_root_and_head(http: httpx.Client) -> None:
    root = http.get("/")
    assert root.status_code == 200
    assert root.text == "Ollama is running"
    assert root.headers["content-type"] == "text/plain; charset=utf-8"
    head = http.head("/")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == "17"
    assert "server" not in head.headers


def test_version(http: httpx.Client) -> None:
    response = http.get("/api/version")
    assert response.headers["content-type"] == JSON
    assert response.content == b'{"version":"0.32.15"}'


def test_generate_stream_framing_and_final_chunk(http: httpx.Client) -> None:
    body = {"model": "llama3.2", "prompt": "Why is the sky blue?", "options": T0}
    response = http.post("/api/generate", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert "content-length" not in response.headers  # chunked, written as produced
    chunks = ndjson(response.content)
    assert len(chunks) == 9
    for chunk in chunks[:-1]:
        assert list(chunk) == ["model", "created_at", "response", "done"]
        assert chunk["model"] == "llama3.2"
        assert chunk["done"] is False
        assert CREATED_AT.match(chunk["created_at"])
    final = chunks[-1]
    assert list(final) == [
        "model",
        "created_at",
        "response",
        "done",
        "done_reason",
        "context",
        *STATS,
    ]
    assert final["response"] == ""
    assert final["done_reason"] == "stop"
    assert final["eval_count"] == 8
    assert all(isinstance(final[k], int) and final[k] > 0 for k in STATS)
    assert final["total_duration"] >= final["load_duration"] + final["eval_duration"]
    assert all(isinstance(t, int) for t in final["context"])


def test_generate_whole_matches_stream(http: httpx.Client) -> None:
    body = {"model": "llama3.2:1b", "prompt": "tell me", "options": T0}
    streamed = ndjson(http.post("/api/generate", json=body).content)
    whole = http.post("/api/generate", json={**body, "stream": False})
    assert whole.headers["content-type"] == JSON
    assert not whole.content.endswith(b"\n")
    data = whole.json()
    assert data["response"] == "".join(c["response"] for c in streamed)
    assert data["context"] == streamed[-1]["context"]
    assert data["done"] is True
    assert data["done_reason"] == "stop"


def test_model_is_echoed_as_sent(http: httpx.Client) -> None:
    for name in ("llama3.2", "llama3.2:latest", "LLAMA3.2", "library/llama3.2"):
        data = http.post("/api/generate", json={"model": name, "prompt": "x", "stream": False})
        assert data.status_code == 200
        assert data.json()["model"] == name


def test_context_only_on_final_chunk_and_not_in_raw_mode(http: httpx.Client) -> None:
    raw = {"model": "llama3.2", "prompt": "[INST] hi [/INST]", "raw": True}
    chunks = ndjson(http.post("/api/generate", json=raw).content)
    assert all("context" not in c for c in chunks)
    whole = http.post("/api/generate", json={**raw, "stream": False}).json()
    assert "context" not in whole
    chat = http.post(
        "/api/chat", json={"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}
    )
    assert all("context" not in c for c in ndjson(chat.content))


def test_zero_stats_are_omitted(http: httpx.Client) -> None:
    body = {"model": "llama3.2", "prompt": "x", "stream": False, "options": {"num_predict": 0}}
    data = http.post("/api/generate", json=body).json()
    assert data["done_reason"] == "length"
    assert data["response"] == ""
    assert "eval_count" not in data
    assert "eval_duration" not in data
    assert data["prompt_eval_count"] > 0


def test_num_predict_caps_with_length(http: httpx.Client) -> None:
    body = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "x"}],
        "options": {"num_predict": 3},
    }
    chunks = ndjson(http.post("/api/chat", json=body).content)
    assert len(chunks) == 4
    assert chunks[-1]["done_reason"] == "length"
    assert chunks[-1]["eval_count"] == 3


def test_chat_chunks(http: httpx.Client) -> None:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello"}], "options": T0}
    chunks = ndjson(http.post("/api/chat", json=body).content)
    for chunk in chunks[:-1]:
        assert list(chunk) == ["model", "created_at", "message", "done"]
        assert chunk["message"]["role"] == "assistant"
    final = chunks[-1]
    assert list(final) == ["model", "created_at", "message", "done_reason", "done", *STATS]
    assert final["message"] == {"role": "assistant", "content": ""}
    whole = http.post("/api/chat", json={**body, "stream": False}).json()
    assert whole["message"]["content"] == "".join(c["message"]["content"] for c in chunks)


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        ("/api/generate", {"model": "llama3.2", "prompt": ""}, "response"),
        ("/api/chat", {"model": "llama3.2", "messages": []}, "message"),
    ],
)
def test_load_and_unload(http: httpx.Client, path: str, body: dict[str, object], key: str) -> None:
    load = http.post(path, json=body)
    assert load.headers["content-type"] == JSON  # one object even though stream defaults to true
    data = load.json()
    assert data["done"] is True
    assert data["done_reason"] == "load"
    assert not any(k in data for k in STATS)
    assert [m["model"] for m in http.get("/api/ps").json()["models"]] == ["llama3.2:latest"]
    unload = http.post(path, json={**body, "keep_alive": 0}).json()
    assert unload["done_reason"] == "unload"
    assert key in unload
    assert http.get("/api/ps").json()["models"] == []


def test_format_json_gives_json_text(http: httpx.Client) -> None:
    body = {"model": "llama3.2", "prompt": "a person", "format": "json", "stream": False}
    text = http.post("/api/generate", json=body).json()["response"]
    assert isinstance(orjson.loads(text), dict)
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "format": schema}
    chunks = ndjson(http.post("/api/chat", json=chat).content)
    value = orjson.loads("".join(c["message"]["content"] for c in chunks))
    assert set(value) == {"name", "age"}
    assert isinstance(value["age"], int)


def test_think_adds_thinking(http: httpx.Client) -> None:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "think": True}
    whole = http.post("/api/chat", json={**body, "stream": False}).json()
    assert whole["message"]["thinking"]
    assert whole["message"]["content"]
    chunks = ndjson(http.post("/api/chat", json=body).content)
    thinking = [c for c in chunks if c["message"].get("thinking")]
    assert thinking
    assert chunks.index(thinking[-1]) < next(
        i for i, c in enumerate(chunks) if c["message"]["content"]
    )
    plain = http.post("/api/chat", json={**body, "think": False, "stream": False}).json()
    assert "thinking" not in plain["message"]


def test_tools_give_a_tool_call_then_an_answer(http: httpx.Client) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    body = {"model": "llama3.2", "messages": messages, "tools": [tool], "stream": False}
    call = http.post("/api/chat", json=body).json()["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"]["city"], str)
    assert call["id"].startswith("call_")
    follow_up = [
        *messages,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    answer = http.post("/api/chat", json={**body, "messages": follow_up}).json()["message"]
    assert answer["content"]
    assert "tool_calls" not in answer


def test_embed_shapes(http: httpx.Client) -> None:
    response = http.post("/api/embed", json={"model": "all-minilm", "input": ["a b", "c"]})
    assert response.headers["content-type"] == JSON
    data = response.json()
    assert list(data) == [
        "model",
        "embeddings",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
    ]
    assert data["model"] == "all-minilm"
    assert len(data["embeddings"]) == 2
    assert len(data["embeddings"][0]) == 384
    short = http.post(
        "/api/embed", json={"model": "all-minilm", "input": "a b", "dimensions": 8}
    ).json()
    assert len(short["embeddings"][0]) == 8
    assert sum(v * v for v in short["embeddings"][0]) == pytest.approx(1.0, abs=1e-6)
    empty = http.post("/api/embed", json={"model": "all-minilm", "input": []}).json()
    assert empty == {"model": "all-minilm", "embeddings": []}
    legacy = http.post("/api/embeddings", json={"model": "all-minilm", "prompt": "a b"}).json()
    assert list(legacy) == ["embedding"]
    assert legacy["embedding"] == data["embeddings"][0]


def test_tags_show_ps_shapes(http: httpx.Client) -> None:
    tags = http.get("/api/tags")
    assert tags.headers["content-type"] == JSON
    models = tags.json()["models"]
    first = models[0]
    assert list(first) == ["name", "model", "modified_at", "size", "digest", "details"]
    assert re.fullmatch(r"[0-9a-f]{64}", first["digest"])
    assert CREATED_AT.match(first["modified_at"])
    assert list(first["details"]) == [
        "parent_model",
        "format",
        "family",
        "families",
        "parameter_size",
        "quantization_level",
    ]
    assert len({m["digest"] for m in models}) == len(models)
    assert http.head("/api/tags").headers["content-length"] == tags.headers["content-length"]

    show = http.post("/api/show", json={"model": "llama3.2"}).json()
    assert show["details"]["family"] == "llama"
    assert show["model_info"]["llama.context_length"] == 131072
    assert list(show["model_info"]) == sorted(show["model_info"])
    assert "completion" in show["capabilities"]
    assert show["modified_at"]
    assert http.post("/api/show", json={"name": "all-minilm"}).json()["capabilities"] == [
        "embedding"
    ]

    http.post("/api/generate", json={"model": "llama3.1:8b", "prompt": "x", "keep_alive": "1h"})
    ps = http.get("/api/ps").json()["models"]
    assert [m["name"] for m in ps] == ["llama3.1:8b"]
    assert list(ps[0]) == [
        "name",
        "model",
        "size",
        "digest",
        "details",
        "expires_at",
        "size_vram",
        "context_length",
    ]


def test_openai_models_shape(http: httpx.Client) -> None:
    response = http.get("/v1/models")
    assert response.headers["content-type"] == "application/json"
    assert response.content.endswith(b"}\n")
    data = response.json()
    assert data["object"] == "list"
    assert data["data"][0].keys() == {"id", "object", "created", "owned_by"}
    assert data["data"][0]["owned_by"] == "library"


def test_openai_chat_sse_framing(http: httpx.Client) -> None:
    body = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
    }
    response = http.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"] == "text/event-stream"
    events = sse(response.content)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert re.fullmatch(r"chatcmpl-\d{1,3}", chunks[0]["id"])
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["system_fingerprint"] == "fp_ollama" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 8 + ["stop"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    whole = http.post("/v1/chat/completions", json={**body, "stream": False})
    assert whole.headers["content-type"] == "application/json"
    data = whole.json()
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1])
    assert data["choices"][0]["message"]["content"] == text
    assert data["usage"] == chunks[-1]["usage"]


def test_openai_completions_stream(http: httpx.Client) -> None:
    body = {"model": "llama3.2", "prompt": "x", "stream": True, "max_tokens": 2}
    events = sse(http.post("/v1/completions", json=body).content)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[0]["object"] == "text_completion"
    assert chunks[0]["id"].startswith("cmpl-")
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "length"]


def test_openai_tool_call(http: httpx.Client) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "tools": [tool]}
    choice = http.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function"
    assert call["function"]["name"] == "lookup"
    assert orjson.loads(call["function"]["arguments"]) == {}
