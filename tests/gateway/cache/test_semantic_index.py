"""The semantic index's pieces: the scope key, the candidates' layout, the scope cache."""

from __future__ import annotations

import numpy as np
from llm_gateway.cache import semantic_index as ix
from llm_gateway.cache.semantic_scope import question_of, scope_key
from llm_gateway.vocabulary import Kind


def chat(last: str, system: str = "be terse", **extra: object) -> dict[str, object]:
    return {
        "model": "llama3.2",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": last}],
        "options": {"temperature": 0},
        **extra,
    }


def key(kind: Kind, body: dict[str, object], namespace: str = "") -> str | None:
    question = question_of(kind, body)
    if question is None:
        return None
    return scope_key(kind, "llama3.2:latest", "d1", question, "all-minilm", "e1", namespace)


def test_only_the_last_user_message_may_differ() -> None:
    a, b = key(Kind.CHAT, chat("How do I exit vim?")), key(Kind.CHAT, chat("How to quit vim?"))
    assert a is not None
    assert a == b
    assert key(Kind.CHAT, chat("How to quit vim?", system="be verbose")) != a
    assert key(Kind.CHAT, chat("How to quit vim?", options={"temperature": 0, "seed": 1})) != a
    assert key(Kind.CHAT, chat("How to quit vim?"), namespace="k.team-a:") != a
    assert question_of(Kind.CHAT, chat("  How to quit vim? ")).text == "How to quit vim?"  # type: ignore[union-attr]
    generate = {"model": "llama3.2", "prompt": "Why is the sky blue?"}
    assert key(Kind.GENERATE, generate) == key(Kind.GENERATE, {**generate, "prompt": "Why blue?"})


def test_what_is_not_compared_by_meaning() -> None:
    image = chat("What is in this picture?")
    image["messages"][-1]["images"] = ["aGk="]  # type: ignore[index]
    not_user = chat("x")
    not_user["messages"].append({"role": "assistant", "content": "y"})  # type: ignore[attr-defined]
    parts = chat("x")
    parts["messages"][-1]["content"] = [{"type": "text", "text": "x"}]  # type: ignore[index]
    for body in (image, not_user, chat(""), chat("x" * 3000)):
        assert question_of(Kind.CHAT, body) is None
    assert question_of(Kind.OPENAI_CHAT, parts) is None
    assert question_of(Kind.EMBED, {"model": "all-minilm", "input": "x"}) is None
    assert question_of(Kind.GENERATE, {"model": "m", "prompt": "x", "context": [1, 2]}) is None


def test_candidates_round_trip_and_skip_what_is_not_one() -> None:
    rng = np.random.default_rng(1)
    vectors = [ix.unit(rng.random(8)) for _ in range(3)]
    reply = {
        f"llm:c1:{i}".encode(): ix.encode_candidate(f"question {i}", v, 1000 + i)
        for i, v in enumerate(vectors)
    }
    reply[b"~v"] = b"7"
    reply[b"llm:c1:bad"] = b"SV10008" + b"\x00" * 4  # truncated
    reply[b"llm:c1:wide"] = ix.encode_candidate("other width", ix.unit(rng.random(16)), 1)
    found = ix.decode_candidates(reply, 8)
    assert found.keys == ["llm:c1:0", "llm:c1:1", "llm:c1:2"]
    sims = found.similarities(vectors[1])
    assert int(np.argmax(sims)) == 1
    assert abs(float(sims[1]) - 1.0) < 1e-6
    assert found.candidate(2) == ix.Candidate("llm:c1:2", "question 2", 1002)
    assert ix.version_of(reply) == b"7"
    assert len(ix.decode_candidates({}, 8)) == 0
    assert ix.unpack_vector(ix.pack_vector(vectors[0])).tolist() == vectors[0].tolist()  # type: ignore[union-attr]
    assert ix.unpack_vector(b"abc") is None


def test_scope_cache_is_by_version_and_bounded() -> None:
    cache = ix.ScopeCache(max_scopes=2)
    empty = ix.decode_candidates({}, 8)
    cache.put("a", b"1", empty)
    assert cache.get("a", b"1") is empty
    assert cache.get("a", b"2") is None  # the scope changed since
    cache.put("b", b"1", empty)
    cache.get("a", b"1")  # a is the most recent now
    cache.put("c", b"1", empty)
    assert cache.get("b", b"1") is None
    assert cache.get("a", b"1") is empty
