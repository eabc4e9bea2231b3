"""Cache-key properties: what changes the output changes the key, and nothing else does."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_gateway.cache.canonical import cache_key, is_deterministic, is_load_only
from llm_gateway.vocabulary import Kind

DIGEST = "a" * 64


def key(body: dict[str, Any], kind: Kind = Kind.GENERATE, model: str = "llama3.2:latest") -> str:
    return cache_key(kind, model, DIGEST, body)


def test_default_valued_options_and_key_order_share_a_key() -> None:
    plain = {"model": "llama3.2", "prompt": "hi", "options": {}}
    explicit = {"options": {"temperature": 0.8, "top_k": 40}, "prompt": "hi", "model": "llama3.2"}
    as_float = {"model": "llama3.2", "prompt": "hi", "options": {"top_k": 40.0, "seed": -1}}
    assert key(plain) == key(explicit) == key(as_float)
    assert key({"model": "x", "prompt": "hi"}) == key(plain)


def test_stream_and_keep_alive_do_not_change_the_key() -> None:
    base = {"model": "llama3.2", "prompt": "hi", "options": {"temperature": 0}}
    assert key(base) == key({**base, "stream": False}) == key({**base, "stream": True})
    assert key(base) == key({**base, "keep_alive": "1h"}) == key({**base, "keep_alive": 0})


def test_model_digest_and_kind_are_in_the_key() -> None:
    body = {"model": "llama3.2", "prompt": "hi"}
    assert cache_key(Kind.GENERATE, "llama3.2:latest", "a" * 64, body) != cache_key(
        Kind.GENERATE, "llama3.2:latest", "b" * 64, body
    )
    assert key(body, model="llama3.2:1b") != key(body)
    assert key(body, kind=Kind.OPENAI_COMPLETIONS) != key(body)


def test_images_are_hashed_not_embedded() -> None:
    image = "iVBORw0KGgo" * 1000
    body = {"model": "llava", "prompt": "what is this", "images": [image]}
    assert key(body) != key({**body, "images": [image + "A"]})
    assert len(key(body)) < 100


# One field at a time, two different values that Ollama would answer differently.
GENERATE_FIELDS: dict[str, tuple[Any, Any]] = {
    "prompt": ("hi", "hello"),
    "suffix": ("a", "b"),
    "system": ("be terse", "be verbose"),
    "template": ("{{ .Prompt }}", "{{ .System }} {{ .Prompt }}"),
    "context": ([1, 2], [1, 3]),
    "raw": (False, True),
    "format": ("json", {"type": "object"}),
    "think": (True, False),
    "images": (["aGk="], ["aGo="]),
}
OPTION_VALUES = st.sampled_from(
    [
        ("temperature", 0.0, 0.5),
        ("seed", 1, 2),
        ("num_predict", 10, 20),
        ("top_k", 10, 40.5),
        ("top_p", 0.5, 0.9001),
        ("stop", ["a"], ["b"]),
        ("num_ctx", 2048, 8192),
        ("repeat_penalty", 1.0, 1.2),
        ("mirostat", 1, 2),
    ]
)


@pytest.mark.slow  # hundreds of hypothesis examples
@settings(max_examples=200, deadline=None)
@given(
    field=st.sampled_from(sorted(GENERATE_FIELDS)),
    prompt=st.text(min_size=1, max_size=50),
    swap=st.booleans(),
)
def test_generate_requests_differing_in_an_output_field_never_share_a_key(
    field: str, prompt: str, swap: bool
) -> None:
    first, second = GENERATE_FIELDS[field]
    if swap:
        first, second = second, first
    a = {"model": "m", "prompt": prompt, field: first}
    b = {"model": "m", "prompt": prompt, field: second}
    if field == "prompt":
        a["prompt"], b["prompt"] = prompt, prompt + "!"
    assert key(a) != key(b)


@pytest.mark.slow  # hundreds of hypothesis examples
@settings(max_examples=200, deadline=None)
@given(option=OPTION_VALUES, prompt=st.text(max_size=40), stream=st.booleans())
def test_options_that_differ_never_share_a_key(
    option: tuple[str, Any, Any], prompt: str, stream: bool
) -> None:
    name, first, second = option
    a = {"model": "m", "prompt": prompt, "options": {name: first}}
    b = {"model": "m", "prompt": prompt, "stream": stream, "options": {name: second}}
    assert key(a) != key(b)


messages_strategy = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=30)}
    ),
    min_size=1,
    max_size=5,
)


@pytest.mark.slow  # hundreds of hypothesis examples
@settings(max_examples=200, deadline=None)
@given(messages=messages_strategy, data=st.data())
def test_chat_messages_change_the_key_and_field_order_does_not(
    messages: list[dict[str, str]], data: st.DataObject
) -> None:
    body = {"model": "m", "messages": messages, "options": {"temperature": 0}}
    reordered = {"options": {"temperature": 0.0}, "messages": copy.deepcopy(messages), "model": "m"}
    assert key(body, Kind.CHAT) == key(reordered, Kind.CHAT)
    index = data.draw(st.integers(0, len(messages) - 1))
    changed = copy.deepcopy(messages)
    changed[index]["content"] += "x"
    assert key(body, Kind.CHAT) != key({**body, "messages": changed}, Kind.CHAT)
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert key(body, Kind.CHAT) != key({**body, "tools": tools}, Kind.CHAT)


def test_openai_defaults_are_ollamas_openai_defaults() -> None:
    # Ollama's OpenAI layer sends temperature 1 and top_p 1 when the client omits them.
    a = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    b = {**a, "temperature": 1, "top_p": 1.0}
    assert key(a, Kind.OPENAI_CHAT) == key(b, Kind.OPENAI_CHAT)
    assert key(a, Kind.OPENAI_CHAT) != key({**a, "temperature": 0}, Kind.OPENAI_CHAT)
    assert key({**a, "max_tokens": 5}, Kind.OPENAI_CHAT) != key(a, Kind.OPENAI_CHAT)
    assert key({**a, "stop": "x"}, Kind.OPENAI_CHAT) == key({**a, "stop": ["x"]}, Kind.OPENAI_CHAT)
    # stream_options only decide whether a usage chunk is sent, not the content.
    assert key(
        {**a, "stream": True, "stream_options": {"include_usage": True}}, Kind.OPENAI_CHAT
    ) == key(a, Kind.OPENAI_CHAT)


def test_openai_embedding_encoding_is_in_the_key() -> None:
    a = {"model": "m", "input": "hi"}
    assert key(a, Kind.OPENAI_EMBEDDINGS) == key(
        {**a, "encoding_format": "float"}, Kind.OPENAI_EMBEDDINGS
    )
    assert key(a, Kind.OPENAI_EMBEDDINGS) != key(
        {**a, "encoding_format": "base64"}, Kind.OPENAI_EMBEDDINGS
    )


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        (Kind.GENERATE, {"prompt": "x"}, False),
        (Kind.GENERATE, {"prompt": "x", "options": {"temperature": 0}}, True),
        (Kind.GENERATE, {"prompt": "x", "options": {"temperature": 0.0}}, True),
        (Kind.GENERATE, {"prompt": "x", "options": {"seed": 7}}, True),
        (Kind.GENERATE, {"prompt": "x", "options": {"seed": -1}}, False),
        (Kind.GENERATE, {"prompt": "x", "options": {"temperature": False}}, False),
        (Kind.CHAT, {"messages": [], "options": {"temperature": 0.8}}, False),
        (Kind.OPENAI_CHAT, {"messages": []}, False),
        (Kind.OPENAI_CHAT, {"messages": [], "temperature": 0}, True),
        (Kind.OPENAI_CHAT, {"messages": [], "seed": 3}, True),
        (Kind.EMBED, {"input": "x"}, True),
        (Kind.OPENAI_EMBEDDINGS, {"input": "x"}, True),
    ],
)
def test_deterministic(kind: Kind, body: dict[str, Any], expected: bool) -> None:
    assert is_deterministic(kind, body) is expected


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        (Kind.GENERATE, {"model": "m"}, True),
        (Kind.GENERATE, {"model": "m", "prompt": "", "keep_alive": 0}, True),
        (Kind.GENERATE, {"model": "m", "prompt": "x"}, False),
        (Kind.CHAT, {"model": "m", "messages": []}, True),
        (Kind.CHAT, {"model": "m", "messages": [{"role": "user", "content": "x"}]}, False),
        (Kind.EMBED, {"model": "m", "input": []}, True),
        (Kind.EMBED, {"model": "m", "input": ["x"]}, False),
    ],
)
def test_load_only_requests(kind: Kind, body: dict[str, Any], expected: bool) -> None:
    assert is_load_only(kind, body) is expected


def test_integral_floats_past_64_bits_stay_floats_and_stay_apart() -> None:
    # orjson reads a JSON integer past 64 bits as a float; the key must not choke on it.
    huge = {"model": "llama3.2", "prompt": "hi", "options": {"seed": 1233e77, "": -1e30}}
    assert key(huge) != key({**huge, "options": {"seed": 1234e77, "": -1e30}})
    assert key({"model": "m", "options": {"seed": 2.0**63}}) == key(
        {"model": "m", "options": {"seed": 2**63}}
    )


# Past-64-bit integers as orjson reads them (floats) are the leaves most likely to break.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    | st.integers(min_value=18, max_value=300).map(lambda e: float(-(10**e) if e % 2 else 10**e)),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)  # fmt: skip
FIELDS = ["model", "prompt", "messages", "options", "images", "input", "stop", "max_tokens",
          "temperature", "seed", "top_p", "think", "format", "tools",
          "encoding_format"]  # fmt: skip


@pytest.mark.slow  # hundreds of hypothesis examples
@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(Kind)), body=st.dictionaries(st.sampled_from(FIELDS), json_values))
def test_any_json_body_gets_a_stable_key(kind: Kind, body: dict[str, Any]) -> None:
    # Whatever JSON a client sends, the key is computed (the gateway never fails on it)
    # and the same for the same body.
    first = cache_key(kind, "m", DIGEST, body)
    assert first == cache_key(kind, "m", DIGEST, copy.deepcopy(body))
    is_deterministic(kind, body)
    is_load_only(kind, body)
