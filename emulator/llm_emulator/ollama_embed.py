"""Ollama's embedding endpoints: /api/embed and the legacy /api/embeddings.

The vectors are deterministic fakes (`generate.embedding`), except for all-minilm when
the real all-MiniLM-L6-v2 is installed (`minilm.py`): then they are the real model's,
so the semantic cache can be evaluated through the emulator as through Ollama.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from llm_emulator import generate as gen
from llm_emulator import minilm
from llm_emulator.catalog import ModelEntry
from llm_emulator.errors import ollama_fail as fail
from llm_emulator.exchange import Exchange
from llm_emulator.inference import (
    BadRequest,
    apply_faults,
    check_types,
    options_of,
    parse_keep_alive,
    parse_object,
)
from llm_emulator.pacing import Run
from llm_emulator.scheduler import Unavailable
from llm_emulator.wire import JSON


def embed_inputs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise BadRequest("invalid input type")


# The model name whose vectors are real when the packaged model is installed.
REAL_MODEL = "all-minilm"


def serves_real(entry: ModelEntry) -> bool:
    base = entry.name.split(":", 1)[0]
    return base == REAL_MODEL and entry.spec.embedding_length == minilm.DIMENSIONS


def embed_vectors(entry: ModelEntry, inputs: list[str], dimensions: Any) -> list[list[float]]:
    """CPU-bound for the real model (tens of ms a text): async callers run it in a thread."""
    full = entry.spec.embedding_length
    model = minilm.load() if inputs and serves_real(entry) else None
    if model is not None:
        vectors = model.encode(inputs)
    else:
        vectors = [gen.embedding(entry.name + entry.digest, text, full) for text in inputs]
    if isinstance(dimensions, int) and not isinstance(dimensions, bool) and 0 < dimensions < full:
        vectors = [_renormalized(v[:dimensions]) for v in vectors]
    return vectors


def _renormalized(vector: list[float]) -> list[float]:
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [round(v / norm, 8) for v in vector]


def embed_token_count(inputs: list[str]) -> int:
    return sum(len(text.split()) + 2 for text in inputs)


async def embed(ex: Exchange) -> None:
    state = ex.state
    run = Run(ex)
    try:
        data = parse_object(ex.body, "api.EmbedRequest")
        check_types(data, "EmbedRequest", {"model": str, "options": dict, "truncate": bool})
        keep_alive = parse_keep_alive(data.get("keep_alive"))
    except BadRequest as exc:
        return await fail(ex, 400, str(exc))
    if await apply_faults(ex, False, fail):
        return None
    model = data.get("model") or ""
    if not model:
        return await fail(ex, 404, "model '' not found")
    try:
        inputs = embed_inputs(data.get("input"))
    except BadRequest as exc:
        return await fail(ex, 400, str(exc))
    entry = state.catalog.lookup(model)
    if entry is None:
        return await fail(ex, 404, f'model "{model}" not found, try pulling it first')
    try:
        await run.schedule(entry, options_of(data), keep_alive)
    except Unavailable as exc:
        return await fail(ex, 503, str(exc))
    if not inputs:
        return await ex.respond(200, orjson.dumps({"model": model, "embeddings": []}), JSON)
    tokens = embed_token_count(inputs)
    await run.prefill(tokens)
    vectors = await asyncio.to_thread(embed_vectors, entry, inputs, data.get("dimensions"))
    stats = run.stats(0, 0)
    body: dict[str, Any] = {
        "model": model,
        "embeddings": vectors,
        "total_duration": stats["total_duration"],
        "load_duration": stats["load_duration"],
        "prompt_eval_count": tokens,
    }
    return await ex.respond(200, orjson.dumps(body), JSON)


async def embeddings(ex: Exchange) -> None:
    """The legacy single-prompt endpoint: `{"embedding": [...]}`."""
    state = ex.state
    run = Run(ex)
    try:
        data = parse_object(ex.body, "api.EmbeddingRequest")
        check_types(data, "EmbeddingRequest", {"model": str, "prompt": str, "options": dict})
        keep_alive = parse_keep_alive(data.get("keep_alive"))
    except BadRequest as exc:
        return await fail(ex, 400, str(exc))
    if await apply_faults(ex, False, fail):
        return None
    model = data.get("model") or ""
    if not model:
        return await fail(ex, 400, "model is required")
    entry = state.catalog.lookup(model)
    if entry is None:
        return await fail(ex, 404, f'model "{model}" not found, try pulling it first')
    try:
        await run.schedule(entry, options_of(data), keep_alive)
    except Unavailable as exc:
        return await fail(ex, 503, str(exc))
    prompt = data.get("prompt") or ""
    if not prompt:  # an empty request only loads the model
        return await ex.respond(200, orjson.dumps({"embedding": []}), JSON)
    await run.prefill(embed_token_count([prompt]))
    vector = (await asyncio.to_thread(embed_vectors, entry, [prompt], None))[0]
    return await ex.respond(200, orjson.dumps({"embedding": vector}), JSON)
