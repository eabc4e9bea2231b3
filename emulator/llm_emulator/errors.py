"""Error answers in the two shapes: Ollama's `{"error": "..."}` and OpenAI's nested object."""

from __future__ import annotations

import orjson

from llm_emulator.exchange import Exchange
from llm_emulator.wire import JSON, OPENAI_JSON, ollama_error, openai_error, openai_error_type


async def ollama_fail(ex: Exchange, status: int, message: str) -> None:
    """gin's c.JSON(status, gin.H{"error": message})."""
    await ex.respond(status, ollama_error(message), JSON)


async def openai_fail(ex: Exchange, status: int, message: str) -> None:
    """An error from the native handler, re-encoded by the OpenAI writer (json.Encoder)."""
    await ex.respond(status, openai_error(status, message), OPENAI_JSON)


async def openai_fail_early(ex: Exchange, message: str) -> None:
    """An error from the OpenAI middleware itself (AbortWithStatusJSON): compact, charset."""
    error = {"message": message, "type": openai_error_type(400), "param": None, "code": None}
    await ex.respond(400, orjson.dumps({"error": error}), JSON)
