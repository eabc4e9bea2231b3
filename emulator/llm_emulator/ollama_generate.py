"""Ollama's native generation endpoints: /api/generate and /api/chat.

Statuses, messages and field order follow Ollama's server/routes.go and api/types.go.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson

from llm_emulator import generate as gen
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
from llm_emulator.pacing import Run, stream_chunks
from llm_emulator.scheduler import Unavailable
from llm_emulator.wire import JSON, NDJSON, ollama_error, rfc3339_nano

_GENERATE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model": str, "prompt": str, "suffix": str, "system": str, "template": str,
    "context": list, "stream": bool, "raw": bool, "images": list, "options": dict,
}  # fmt: skip
_CHAT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model": str, "messages": list, "tools": list, "stream": bool, "options": dict,
}  # fmt: skip


def _error_line(message: str) -> bytes:
    return ollama_error(message) + b"\n"


def _model_material(entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    material = {k: v for k, v in data.items() if k not in ("stream", "keep_alive", "model")}
    material["model"] = entry.name
    material["digest"] = entry.digest
    return material


# -- generate ---------------------------------------------------------------------


async def generate(ex: Exchange) -> None:
    state = ex.state
    knobs = state.knobs
    run = Run(ex)
    try:
        data = parse_object(ex.body, "api.GenerateRequest")
        check_types(data, "GenerateRequest", _GENERATE_FIELDS)
        keep_alive = parse_keep_alive(data.get("keep_alive"))
    except BadRequest as exc:
        return await fail(ex, 400, str(exc))
    model = data.get("model") or ""
    streaming = data.get("stream", True) is not False
    if await apply_faults(ex, streaming, fail):
        return None
    entry = state.catalog.lookup(model)
    if entry is None:
        return await fail(ex, 404, f"model '{model}' not found")
    prompt: str = data.get("prompt") or ""
    if not prompt and keep_alive == 0:
        state.scheduler.expire_model(entry)
        return await _load_reply(ex, {"model": model, "created_at": "", "response": ""}, "unload")
    if data.get("raw") and (data.get("template") or data.get("system") or data.get("context")):
        return await fail(ex, 400, "raw mode does not support template, system, or context")
    if entry.spec.embedding_only:
        return await fail(ex, 400, f'"{model}" does not support generate')
    options = options_of(data)
    try:
        await run.schedule(entry, options, keep_alive)
    except Unavailable as exc:
        return await fail(ex, 503, str(exc))
    if not prompt:
        return await _load_reply(ex, {"model": model, "created_at": "", "response": ""}, "load")

    seed = gen.request_seed(_model_material(entry, data), gen.is_deterministic(options))
    output = gen.generate(
        seed, knobs.tokens, options, fmt=data.get("format"), think=data.get("think")
    )
    system = data.get("system") or ""
    prompt_count = gen.count_prompt_tokens((system, prompt), 2 if system else 1)
    rendered = [("system", system), ("user", prompt)] if system else [("user", prompt)]
    run.cache_prompt(gen.prompt_tokens(rendered), output.text.split())
    context = None if data.get("raw") else gen.context_ids(prompt, output.text)

    def final(response: str, thinking: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "created_at": _now(), "response": response}
        if thinking:
            body["thinking"] = thinking
        body["done"] = True
        body["done_reason"] = output.done_reason
        if context is not None:
            body["context"] = context
        body.update(run.stats(prompt_count, output.eval_count))
        return body

    if not streaming:
        await run.whole(prompt_count, output.eval_count)
        thinking = "".join(output.thinking)
        return await ex.respond(200, orjson.dumps(final(output.text, thinking)), JSON)

    def chunks() -> Iterator[bytes]:
        for piece in output.thinking:
            yield _line(
                {
                    "model": model,
                    "created_at": _now(),
                    "response": "",
                    "thinking": piece,
                    "done": False,
                }
            )
        for piece in output.pieces:
            yield _line({"model": model, "created_at": _now(), "response": piece, "done": False})
        yield _line(final("", None))

    paced = len(output.thinking) + len(output.pieces)
    await stream_chunks(run, NDJSON, chunks(), prompt_count, paced, _error_line)
    return None


# -- chat -------------------------------------------------------------------------


def _message_texts(messages: list[Any]) -> list[str]:
    texts = []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            texts.append(message["content"])
    return texts


def _rendered(messages: list[Any]) -> list[tuple[str, str]]:
    """(role, text) of each message, as the chat template sees them."""
    rendered = []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        rendered.append((str(role or "user"), content if isinstance(content, str) else ""))
    return rendered


def _check_messages(messages: list[Any]) -> None:
    for message in messages:
        if not isinstance(message, dict):
            raise BadRequest(
                f"json: cannot unmarshal {type(message).__name__} into Go struct field "
                "ChatRequest.messages of type api.Message"
            )
        for name in ("role", "content"):
            value = message.get(name)
            if value is not None and not isinstance(value, str):
                raise BadRequest(
                    "json: cannot unmarshal into Go struct field "
                    f"ChatRequest.messages.{name} of type string"
                )


async def chat(ex: Exchange) -> None:
    state = ex.state
    knobs = state.knobs
    run = Run(ex)
    try:
        data = parse_object(ex.body, "api.ChatRequest")
        check_types(data, "ChatRequest", _CHAT_FIELDS)
        messages: list[Any] = data.get("messages") or []
        _check_messages(messages)
        keep_alive = parse_keep_alive(data.get("keep_alive"))
    except BadRequest as exc:
        return await fail(ex, 400, str(exc))
    model = data.get("model") or ""
    streaming = data.get("stream", True) is not False
    if await apply_faults(ex, streaming, fail):
        return None
    if not model:
        return await fail(ex, 400, "model is required")
    entry = state.catalog.lookup(model)
    if entry is None:
        return await fail(ex, 404, f"model '{model}' not found")
    empty_message = {"role": "assistant", "content": ""}
    if not messages and keep_alive == 0:
        state.scheduler.expire_model(entry)
        return await _load_reply(
            ex, {"model": model, "created_at": "", "message": empty_message}, "unload"
        )
    if entry.spec.embedding_only:
        return await fail(ex, 400, f'"{model}" does not support chat')
    options = options_of(data)
    try:
        await run.schedule(entry, options, keep_alive)
    except Unavailable as exc:
        return await fail(ex, 503, str(exc))
    if not messages:
        return await _load_reply(
            ex, {"model": model, "created_at": "", "message": empty_message}, "load"
        )

    seed = gen.request_seed(_model_material(entry, data), gen.is_deterministic(options))
    tools = data.get("tools") or None
    # A model with tools calls one, then answers in words once the tool result is in.
    last_role = messages[-1].get("role") if messages else None
    output = gen.generate(
        seed, knobs.tokens, options, fmt=data.get("format"), think=data.get("think"),
        tools=tools if last_role != "tool" else None,
    )  # fmt: skip
    prompt_count = gen.count_prompt_tokens(_message_texts(messages), len(messages))
    run.cache_prompt(gen.prompt_tokens(_rendered(messages)), output.text.split())

    def final(content: str, thinking: str, tool_calls: list[Any] | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        if tool_calls:
            message["tool_calls"] = tool_calls
        body: dict[str, Any] = {"model": model, "created_at": _now(), "message": message}
        body["done_reason"] = output.done_reason
        body["done"] = True
        body.update(run.stats(prompt_count, output.eval_count))
        return body

    if not streaming:
        await run.whole(prompt_count, output.eval_count)
        body = final(output.text, "".join(output.thinking), output.tool_calls)
        return await ex.respond(200, orjson.dumps(body), JSON)

    def chunks() -> Iterator[bytes]:
        message: dict[str, Any]
        for piece in output.thinking:
            message = {"role": "assistant", "content": "", "thinking": piece}
            yield _line({"model": model, "created_at": _now(), "message": message, "done": False})
        for piece in output.pieces:
            message = {"role": "assistant", "content": piece}
            yield _line({"model": model, "created_at": _now(), "message": message, "done": False})
        if output.tool_calls:
            message = {"role": "assistant", "content": "", "tool_calls": output.tool_calls}
            yield _line({"model": model, "created_at": _now(), "message": message, "done": False})
        yield _line(final("", "", None))

    await stream_chunks(run, NDJSON, chunks(), prompt_count, output.eval_count, _error_line)
    return None


# -- shared ---------------------------------------------------------------------


def _now() -> str:
    return rfc3339_nano(time.time_ns())


def _line(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value) + b"\n"


async def _load_reply(ex: Exchange, body: dict[str, Any], reason: str) -> None:
    """Load/unload answers are one JSON object even when streaming was asked for."""
    body["created_at"] = _now()
    if "message" in body:
        body["done_reason"] = reason
        body["done"] = True
    else:
        body["done"] = True
        body["done_reason"] = reason
    await ex.respond(200, orjson.dumps(body), JSON)
