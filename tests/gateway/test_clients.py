"""The official ollama and openai clients cannot tell the gateway from Ollama."""

from __future__ import annotations

from typing import Any

import ollama
import pytest
from openai import OpenAI

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayProcess

GREEDY = {"temperature": 0}


def stripped(response: Any) -> dict[str, Any]:
    """A client response without the fields that measure time (they differ per call)."""
    data = response.model_dump() if hasattr(response, "model_dump") else dict(response)
    for name in ("created_at", "total_duration", "load_duration", "prompt_eval_duration",
                 "eval_duration", "expires_at"):  # fmt: skip
        data.pop(name, None)
    return data


@pytest.fixture
def clients(gateway: GatewayProcess, emulator: Emulator) -> tuple[ollama.Client, ollama.Client]:
    return ollama.Client(host=gateway.url), ollama.Client(host=emulator.url)


def test_generate_and_chat_match_ollama_streaming_or_not(
    clients: tuple[ollama.Client, ollama.Client], emulator: Emulator
) -> None:
    via, direct = clients
    for stream in (False, True):
        kwargs: dict[str, Any] = {"model": "llama3.2", "prompt": f"why is the sky blue {stream}",
                                  "options": GREEDY, "stream": stream}  # fmt: skip
        if stream:
            got = [stripped(c) for c in via.generate(**kwargs)]
            want = [stripped(c) for c in direct.generate(**kwargs)]
            assert "".join(c["response"] for c in got) == "".join(c["response"] for c in want)
            assert got[-1] == want[-1]
            assert got[-1]["done"] is True
        else:
            assert stripped(via.generate(**kwargs)) == stripped(direct.generate(**kwargs))
        messages = [{"role": "user", "content": f"hello {stream}"}]
        chat: dict[str, Any] = {"model": "llama3.2", "messages": messages, "options": GREEDY,
                                "stream": stream}  # fmt: skip
        if stream:
            got = [stripped(c) for c in via.chat(**chat)]
            want = [stripped(c) for c in direct.chat(**chat)]
            text = "".join(c["message"]["content"] for c in got)
            assert text == "".join(c["message"]["content"] for c in want)
            assert text
        else:
            assert stripped(via.chat(**chat)) == stripped(direct.chat(**chat))
    # A second identical request is answered from the cache, and is the same answer.
    again = via.generate(model="llama3.2", prompt="why is the sky blue False", options=GREEDY)
    assert (
        again.response
        == direct.generate(
            model="llama3.2", prompt="why is the sky blue False", options=GREEDY
        ).response
    )


def test_embed_list_show_ps_match_ollama(clients: tuple[ollama.Client, ollama.Client]) -> None:
    via, direct = clients
    assert (
        via.embed(model="all-minilm", input=["a", "b"]).embeddings
        == direct.embed(model="all-minilm", input=["a", "b"]).embeddings
    )
    assert (
        via.embeddings(model="all-minilm", prompt="x").embedding
        == direct.embeddings(model="all-minilm", prompt="x").embedding
    )
    assert via.list() == direct.list()
    assert stripped(via.show("llama3.2")) == stripped(direct.show("llama3.2"))
    assert [m.model for m in via.ps().models] == [m.model for m in direct.ps().models]


def test_unknown_model_is_the_same_error_through_the_gateway(
    clients: tuple[ollama.Client, ollama.Client],
) -> None:
    via, direct = clients
    with pytest.raises(ollama.ResponseError) as through:
        via.generate(model="nope", prompt="x")
    with pytest.raises(ollama.ResponseError) as straight:
        direct.generate(model="nope", prompt="x")
    assert (through.value.status_code, through.value.error) == (
        straight.value.status_code,
        straight.value.error,
    )


def test_openai_client_matches(gateway: GatewayProcess, emulator: Emulator) -> None:
    via = OpenAI(base_url=f"{gateway.url}/v1", api_key="unused")
    direct = OpenAI(base_url=f"{emulator.url}/v1", api_key="unused")
    messages: Any = [{"role": "user", "content": "say hi"}]
    got = via.chat.completions.create(model="llama3.2", messages=messages, temperature=0)
    want = direct.chat.completions.create(model="llama3.2", messages=messages, temperature=0)
    assert got.choices[0].message.content == want.choices[0].message.content
    assert got.usage == want.usage

    def streamed(client: OpenAI) -> tuple[str, Any]:
        chunks = list(
            client.chat.completions.create(
                model="llama3.2",
                messages=messages,
                temperature=0,
                seed=3,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return text, chunks[-1].usage

    assert streamed(via) == streamed(direct)
    embeddings = via.embeddings.create(model="all-minilm", input=["one", "two"])
    assert [e.embedding for e in embeddings.data] == [
        e.embedding for e in direct.embeddings.create(model="all-minilm", input=["one", "two"]).data
    ]
    assert [m.id for m in via.models.list().data] == [m.id for m in direct.models.list().data]
    completion = via.completions.create(model="llama3.2", prompt="once", temperature=0)
    assert (
        completion.choices[0].text
        == direct.completions.create(model="llama3.2", prompt="once", temperature=0).choices[0].text
    )
