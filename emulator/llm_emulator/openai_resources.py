"""Ollama's OpenAI-compatible resources: /v1/embeddings, /v1/models, /v1/models/{model}."""

from __future__ import annotations

import base64
from array import array
from typing import Any

import orjson

from llm_emulator.catalog import ModelEntry
from llm_emulator.errors import openai_fail as reject
from llm_emulator.errors import openai_fail_early as reject_early
from llm_emulator.exchange import Exchange
from llm_emulator.inference import BadRequest, apply_faults, check_types
from llm_emulator.ollama_embed import embed_inputs, embed_token_count, embed_vectors
from llm_emulator.openai_generate import parse_openai
from llm_emulator.pacing import Run
from llm_emulator.scheduler import Unavailable
from llm_emulator.wire import OPENAI_JSON


async def embeddings(ex: Exchange) -> None:
    state = ex.state
    try:
        data = parse_openai(ex, "openai.EmbedRequest")
        check_types(data, "EmbedRequest", {"model": str, "encoding_format": str})
        encoding = (data.get("encoding_format") or "").lower()
        if encoding not in ("", "float", "base64"):
            raise BadRequest(
                f"Invalid value for 'encoding_format' = {data['encoding_format']}. "
                "Supported values: ['float', 'base64']."
            )
        raw_input = data.get("input")
        if raw_input == "":
            raw_input = [""]
        if raw_input is None or raw_input == []:
            raise BadRequest("invalid input")
    except BadRequest as exc:
        return await reject_early(ex, str(exc))
    if await apply_faults(ex, False, reject):
        return None
    model = data.get("model") or ""
    try:
        inputs = embed_inputs(raw_input)
    except BadRequest as exc:
        return await reject(ex, 400, str(exc))
    entry = state.catalog.lookup(model) if model else None
    if entry is None:
        if not model:
            return await reject(ex, 404, "model '' not found")
        return await reject(ex, 404, f'model "{model}" not found, try pulling it first')
    run = Run(ex)
    try:
        await run.schedule(entry, {}, None)
    except Unavailable as exc:
        return await reject(ex, 503, str(exc))
    tokens = embed_token_count(inputs)
    await run.prefill(tokens)
    vectors = embed_vectors(entry, inputs, data.get("dimensions"))
    items = [
        {
            "object": "embedding",
            "embedding": _b64(vector) if encoding == "base64" else vector,
            "index": index,
        }
        for index, vector in enumerate(vectors)
    ]
    body = {
        "object": "list",
        "data": items,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return await ex.respond(200, orjson.dumps(body) + b"\n", OPENAI_JSON)


def _b64(vector: list[float]) -> str:
    # float32 little-endian, as Ollama's floatsToBase64 writes them.
    packed = array("f", vector)
    if packed.itemsize != 4:  # pragma: no cover - every platform we run on
        raise RuntimeError("float32 arrays are not 4 bytes here")
    return base64.b64encode(packed.tobytes()).decode()


def _model_item(entry: ModelEntry, name: str | None = None) -> dict[str, Any]:
    return {
        "id": name or entry.name,
        "object": "model",
        "created": entry.modified_ns // 1_000_000_000,
        "owned_by": "library",
    }


async def models(ex: Exchange) -> None:
    data = [_model_item(e) for e in ex.state.catalog.entries()]
    body = orjson.dumps({"object": "list", "data": data}) + b"\n"
    await ex.respond(200, body, OPENAI_JSON)


async def model(ex: Exchange) -> None:
    name = ex.path.removeprefix("/v1/models/")
    entry = ex.state.catalog.lookup(name)
    if entry is None:
        return await reject(ex, 404, f"model '{name}' not found")
    return await ex.respond(200, orjson.dumps(_model_item(entry, name)) + b"\n", OPENAI_JSON)
