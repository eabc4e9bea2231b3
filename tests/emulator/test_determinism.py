"""Output is a function of the request when sampling is deterministic, random otherwise."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.support.emulator import Emulator


def text(http: httpx.Client, **fields: Any) -> str:
    body = {"model": "llama3.2", "prompt": "Why is the sky blue?", "stream": False, **fields}
    response = http.post("/api/generate", json=body)
    assert response.status_code == 200
    result: str = response.json()["response"]
    return result


def test_temperature_zero_repeats(http: httpx.Client) -> None:
    first = text(http, options={"temperature": 0})
    assert text(http, options={"temperature": 0}) == first
    assert text(http, options={"temperature": 0.0}) == first
    assert text(http, options={"temperature": 0}, keep_alive="10m") == first


def test_seed_repeats_and_differs_by_seed(http: httpx.Client) -> None:
    assert text(http, options={"seed": 42, "temperature": 0.9}) == text(
        http, options={"seed": 42, "temperature": 0.9}
    )
    assert text(http, options={"seed": 1}) != text(http, options={"seed": 2})


def test_default_sampling_varies(http: httpx.Client) -> None:
    outputs = {text(http) for _ in range(5)}
    assert len(outputs) > 1
    assert len({text(http, options={"temperature": 0.8}) for _ in range(5)}) > 1


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "Another prompt"},
        {"model": "llama3.2:1b"},
        {"system": "Be terse."},
        {"format": "json"},
        {"options": {"temperature": 0, "top_k": 10}},
    ],
)
def test_output_changing_fields_change_output(http: httpx.Client, change: dict[str, Any]) -> None:
    base = {"options": {"temperature": 0}}
    assert text(http, **base) != text(http, **{**base, **change})


def test_stream_and_whole_and_model_alias_agree(http: httpx.Client) -> None:
    t0 = {"temperature": 0}
    whole = text(http, options=t0)
    assert text(http, options=t0, model="llama3.2:latest") == whole
    body = {"model": "llama3.2", "prompt": "Why is the sky blue?", "options": t0}
    lines = http.post("/api/generate", json=body).text.splitlines()
    assert "".join(orjson.loads(line)["response"] for line in lines) == whole


def test_chat_determinism(http: httpx.Client) -> None:
    body = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        "options": {"seed": 3},
    }
    first = http.post("/api/chat", json=body).json()["message"]["content"]
    assert http.post("/api/chat", json=body).json()["message"]["content"] == first
    other = {**body, "messages": [{"role": "user", "content": "hello"}]}
    assert http.post("/api/chat", json=other).json()["message"]["content"] != first


def test_openai_determinism(http: httpx.Client) -> None:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "seed": 5}
    first = http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    assert http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"] == first
    unseeded = {k: v for k, v in body.items() if k != "seed"}
    contents = {
        http.post("/v1/chat/completions", json=unseeded).json()["choices"][0]["message"]["content"]
        for _ in range(5)
    }
    assert len(contents) > 1


def test_digest_change_changes_deterministic_output(emulator: Emulator, http: httpx.Client) -> None:
    before = text(http, options={"temperature": 0})
    emulator.set_digest("llama3.2", "ab" * 32)
    assert text(http, options={"temperature": 0}) != before


def test_embeddings_are_deterministic(http: httpx.Client) -> None:
    def vec(value: str) -> list[float]:
        data = http.post("/api/embed", json={"model": "nomic-embed-text", "input": value}).json()
        result: list[float] = data["embeddings"][0]
        return result

    assert vec("same") == vec("same")
    assert vec("same") != vec("other")
