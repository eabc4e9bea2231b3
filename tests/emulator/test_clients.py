"""The official ollama and openai clients cannot tell the emulator from Ollama."""

from __future__ import annotations

import ollama
import pytest
from openai import OpenAI

from tests.support.emulator import Emulator

DETERMINISTIC = {"temperature": 0}


@pytest.fixture
def client(emulator: Emulator) -> ollama.Client:
    return ollama.Client(host=emulator.url)


@pytest.fixture
def oai(emulator: Emulator) -> OpenAI:
    return OpenAI(base_url=emulator.url + "/v1", api_key="x", max_retries=0)


def test_generate_whole_and_streamed_agree(client: ollama.Client) -> None:
    whole = client.generate(model="llama3.2", prompt="Why is the sky blue?", options=DETERMINISTIC)
    assert whole.done
    assert whole.done_reason == "stop"
    assert whole.model == "llama3.2"
    assert whole.eval_count == 8
    assert len(whole.response.split()) == 8
    assert whole.prompt_eval_count
    assert whole.total_duration
    assert whole.context

    parts = list(
        client.generate(
            model="llama3.2", prompt="Why is the sky blue?", options=DETERMINISTIC, stream=True
        )
    )
    assert [p.done for p in parts] == [False] * 8 + [True]
    assert "".join(p.response for p in parts) == whole.response
    assert parts[-1].context == whole.context
    assert all(p.context is None for p in parts[:-1])


def test_chat_whole_and_streamed(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Hello there"}]
    whole = client.chat(model="llama3.2:1b", messages=messages, options=DETERMINISTIC)
    assert whole.message.role == "assistant"
    assert len(whole.message.content.split()) == 8
    assert whole.done_reason == "stop"
    assert whole.eval_count == 8

    parts = list(
        client.chat(model="llama3.2:1b", messages=messages, options=DETERMINISTIC, stream=True)
    )
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].done
    assert parts[-1].eval_count == 8


def test_embed_and_legacy_embeddings(client: ollama.Client) -> None:
    result = client.embed(model="all-minilm", input=["first text", "second text"])
    assert len(result.embeddings) == 2
    assert all(len(vector) == 384 for vector in result.embeddings)
    assert result.embeddings[0] != result.embeddings[1]
    again = client.embed(model="all-minilm", input="first text")
    assert again.embeddings[0] == result.embeddings[0]
    norm = sum(v * v for v in again.embeddings[0]) ** 0.5
    assert norm == pytest.approx(1.0, abs=1e-6)

    legacy = client.embeddings(model="nomic-embed-text", prompt="first text")
    assert len(legacy.embedding) == 768


def test_list_show_ps(client: ollama.Client) -> None:
    names = [m.model for m in client.list().models]
    assert set(names) == {
        "llama3.2:1b",
        "llama3.2:latest",
        "llama3.1:8b",
        "nomic-embed-text:latest",
        "all-minilm:latest",
    }
    listed = client.list().models[0]
    assert listed.digest is not None
    assert len(listed.digest) == 64
    assert listed.modified_at is not None
    assert listed.details is not None

    shown = client.show("llama3.2")
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.details is not None
    assert shown.details.family == "llama"

    assert client.ps().models == []
    client.generate(model="llama3.2", prompt="load me")
    loaded = client.ps().models
    assert [m.model for m in loaded] == ["llama3.2:latest"]
    assert loaded[0].expires_at is not None


def test_unknown_model_raises_like_ollama(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="nope", prompt="hi")
    assert info.value.status_code == 404
    assert info.value.error == "model 'nope' not found"


def test_openai_chat_completions(oai: OpenAI) -> None:
    messages = [{"role": "user", "content": "Say something"}]
    whole = oai.chat.completions.create(model="llama3.2", messages=messages, temperature=0)  # type: ignore[arg-type]
    assert whole.id.startswith("chatcmpl-")
    assert whole.system_fingerprint == "fp_ollama"
    assert whole.choices[0].finish_reason == "stop"
    content = whole.choices[0].message.content
    assert content is not None
    assert len(content.split()) == 8
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 8

    stream = oai.chat.completions.create(
        model="llama3.2",
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == content
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_openai_completions_embeddings_models(oai: OpenAI) -> None:
    completion = oai.completions.create(model="llama3.2", prompt="Once upon", seed=7)
    assert completion.object == "text_completion"
    assert len(completion.choices[0].text.split()) == 8

    embedded = oai.embeddings.create(model="all-minilm", input=["a", "b"])
    assert [d.index for d in embedded.data] == [0, 1]
    assert len(embedded.data[0].embedding) == 384
    as_floats = oai.embeddings.create(model="all-minilm", input="a", encoding_format="float")
    assert as_floats.data[0].embedding == pytest.approx(embedded.data[0].embedding, abs=1e-6)

    ids = [m.id for m in oai.models.list()]
    assert "llama3.2:latest" in ids
    assert oai.models.retrieve("llama3.2").id == "llama3.2"
