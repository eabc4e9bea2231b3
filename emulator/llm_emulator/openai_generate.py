"""Ollama's OpenAI-compatible generation: /v1/chat/completions and /v1/completions.

Mirrors ollama's middleware/openai.go: the request is turned into a native one (default
temperature 1.0, top_p 1.0, `max_tokens` → num_predict), errors take OpenAI's shape, SSE
streams end with `data: [DONE]`, and `stream` defaults to false.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import orjson

from llm_emulator import generate as gen
from llm_emulator.catalog import ModelEntry
from llm_emulator.errors import openai_fail as reject
from llm_emulator.errors import openai_fail_early as reject_early
from llm_emulator.exchange import Exchange
from llm_emulator.inference import BadRequest, apply_faults, check_types, parse_object
from llm_emulator.pacing import Run, stream_chunks
from llm_emulator.scheduler import Unavailable
from llm_emulator.wire import OPENAI_JSON, SSE, openai_error

FINGERPRINT = "fp_ollama"


def parse_openai(ex: Exchange, struct: str) -> dict[str, Any]:
    try:
        return parse_object(ex.body, struct)
    except BadRequest as exc:
        # The OpenAI layer binds the body itself; an empty body is io.EOF, said as "EOF".
        if str(exc) == "missing request body":
            raise BadRequest("EOF") from None
        raise


def _options(data: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    stop = data.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list):
        options["stop"] = [s for s in stop if isinstance(s, str)]
    if isinstance(data.get("max_tokens"), int):
        options["num_predict"] = data["max_tokens"]
    temperature = data.get("temperature")
    options["temperature"] = 1.0 if temperature is None else temperature
    if data.get("seed") is not None:
        options["seed"] = data["seed"]
    for name in ("frequency_penalty", "presence_penalty"):
        if data.get(name) is not None:
            options[name] = data[name]
    options["top_p"] = data.get("top_p") or 1.0
    return options


def _format(data: dict[str, Any]) -> Any:
    response_format = data.get("response_format")
    if not isinstance(response_format, dict):
        return None
    kind = str(response_format.get("type", "")).strip().lower()
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = response_format.get("json_schema")
        return schema.get("schema") if isinstance(schema, dict) else None
    return None


def _think(data: dict[str, Any]) -> Any:
    reasoning = data.get("reasoning")
    effort = (
        reasoning.get("effort") if isinstance(reasoning, dict) else data.get("reasoning_effort")
    )
    if not effort:
        return None
    if effort not in ("high", "medium", "low", "none"):
        raise BadRequest(
            f'invalid reasoning value: \'{effort}\' (must be "high", "medium", "low", or "none")'
        )
    return False if effort == "none" else effort


def _messages(raw: list[Any]) -> list[dict[str, Any]]:
    """OpenAI messages as Ollama sees them: content parts split into text messages."""
    messages: list[dict[str, Any]] = []
    for message in raw:
        if not isinstance(message, dict):
            raise BadRequest("invalid message format")
        role = message.get("role") or ""
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    raise BadRequest("invalid message format")
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    messages.append({"role": role, "content": part["text"]})
                elif part.get("type") == "image_url":
                    messages.append(
                        {"role": role, "content": "", "images": [orjson.dumps(part).decode()]}
                    )
                else:
                    raise BadRequest("invalid message format")
        elif message.get("tool_calls") is not None:
            messages.append({"role": role, "content": "", "tool_calls": message["tool_calls"]})
        else:
            raise BadRequest(f"invalid message content type: {type(content).__name__}")
    return messages


def _include_usage(data: dict[str, Any]) -> bool:
    stream_options = data.get("stream_options")
    return isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _sse(value: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"


def _sse_error(message: str) -> bytes:
    return b"data: " + openai_error(500, message).rstrip(b"\n") + b"\n\n"


def _material(entry: ModelEntry, native: dict[str, Any]) -> dict[str, Any]:
    return {**native, "model": entry.name, "digest": entry.digest}


def _tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": call["id"],
            "index": call["function"].get("index", 0),
            "type": "function",
            "function": {
                "name": call["function"]["name"],
                "arguments": orjson.dumps(call["function"]["arguments"]).decode(),
            },
        }
        for call in calls
    ]


async def chat_completions(ex: Exchange) -> None:
    state = ex.state
    knobs = state.knobs
    run = Run(ex)
    try:
        data = parse_openai(ex, "openai.ChatCompletionRequest")
        check_types(data, "ChatCompletionRequest", {"model": str, "messages": list, "stream": bool})
        if not data.get("messages"):
            raise BadRequest("[] is too short - 'messages'")
        messages = _messages(data["messages"])
        native = {
            "messages": messages,
            "options": _options(data),
            "format": _format(data),
            "tools": data.get("tools"),
            "think": _think(data),
        }
    except BadRequest as exc:
        return await reject_early(ex, str(exc))
    streaming = data.get("stream") is True
    if await apply_faults(ex, streaming, reject):
        return None
    model = data.get("model") or ""
    if not model:
        return await reject(ex, 400, "model is required")
    entry = state.catalog.lookup(model)
    if entry is None:
        return await reject(ex, 404, f"model '{model}' not found")
    if entry.spec.embedding_only:
        return await reject(ex, 400, f'"{model}" does not support chat')
    options = native["options"]
    try:
        await run.schedule(entry, options, None)
    except Unavailable as exc:
        return await reject(ex, 503, str(exc))

    seed = gen.request_seed(_material(entry, native), gen.is_deterministic(options))
    last_role = messages[-1].get("role")
    tools = native["tools"] if last_role != "tool" else None
    output = gen.generate(seed, knobs.tokens, options, native["format"], native["think"], tools)
    texts = [m["content"] for m in messages]
    usage = _usage(gen.count_prompt_tokens(texts, len(messages)), output.eval_count)
    rendered = [(str(m.get("role") or "user"), m["content"]) for m in messages]
    run.cache_prompt(gen.prompt_tokens(rendered), output.text.split())
    completion_id = f"chatcmpl-{random.randrange(999)}"  # noqa: S311 - Ollama's ids are rand.Intn(999)
    created = int(time.time())
    finish = "tool_calls" if output.tool_calls else output.done_reason

    if not streaming:
        await run.whole(usage["prompt_tokens"], output.eval_count)
        message: dict[str, Any] = {"role": "assistant", "content": output.text}
        if output.thinking:
            message["reasoning"] = "".join(output.thinking)
        if output.tool_calls:
            message["tool_calls"] = _tool_calls(output.tool_calls)
        body = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }
        return await ex.respond(200, orjson.dumps(body) + b"\n", OPENAI_JSON)

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def chunks() -> Iterator[bytes]:
        for piece in output.thinking:
            yield _sse(chunk({"role": "assistant", "content": "", "reasoning": piece}, None))
        for piece in output.pieces:
            yield _sse(chunk({"role": "assistant", "content": piece}, None))
        if output.tool_calls:
            delta = {
                "role": "assistant",
                "content": "",
                "tool_calls": _tool_calls(output.tool_calls),
            }
            yield _sse(chunk(delta, None))
        last = chunk({"role": "assistant", "content": ""}, finish)
        yield _sse(last)
        if _include_usage(data):
            yield _sse({**last, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    await stream_chunks(run, SSE, chunks(), usage["prompt_tokens"], output.eval_count, _sse_error)
    return None


async def completions(ex: Exchange) -> None:
    state = ex.state
    knobs = state.knobs
    run = Run(ex)
    try:
        data = parse_openai(ex, "openai.CompletionRequest")
        check_types(
            data, "CompletionRequest", {"model": str, "prompt": str, "suffix": str, "stream": bool}
        )
        prompt: str = data.get("prompt") or ""
        options = _options(data)
        native = {"prompt": prompt, "suffix": data.get("suffix") or "", "options": options}
    except BadRequest as exc:
        return await reject_early(ex, str(exc))
    streaming = data.get("stream") is True
    if await apply_faults(ex, streaming, reject):
        return None
    model = data.get("model") or ""
    entry = state.catalog.lookup(model)
    if entry is None:
        return await reject(ex, 404, f"model '{model}' not found")
    if entry.spec.embedding_only:
        return await reject(ex, 400, f'"{model}" does not support generate')
    try:
        await run.schedule(entry, options, None)
    except Unavailable as exc:
        return await reject(ex, 503, str(exc))

    seed = gen.request_seed(_material(entry, native), gen.is_deterministic(options))
    output = gen.generate(seed, knobs.tokens if prompt else 0, options)
    done_reason = output.done_reason if prompt else "load"
    usage = _usage(gen.count_prompt_tokens([prompt]) if prompt else 0, output.eval_count)
    if prompt:
        run.cache_prompt(gen.prompt_tokens([("user", prompt)]), output.text.split())
    completion_id = f"cmpl-{random.randrange(999)}"  # noqa: S311 - Ollama's ids are rand.Intn(999)
    created = int(time.time())

    if not streaming:
        await run.whole(usage["prompt_tokens"], output.eval_count)
        body = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"text": output.text, "index": 0, "finish_reason": done_reason}],
            "usage": usage,
        }
        return await ex.respond(200, orjson.dumps(body) + b"\n", OPENAI_JSON)

    include_usage = _include_usage(data)

    def chunk(text: str, finish_reason: str | None) -> dict[str, Any]:
        value: dict[str, Any] = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "choices": [{"text": text, "index": 0, "finish_reason": finish_reason}],
            "model": model,
            "system_fingerprint": FINGERPRINT,
        }
        if include_usage:
            # Ollama puts an all-zero usage on every chunk when usage is asked for.
            value["usage"] = _usage(0, 0)
        return value

    def chunks() -> Iterator[bytes]:
        for piece in output.pieces:
            yield _sse(chunk(piece, None))
        last = chunk("", done_reason)
        yield _sse(last)
        if include_usage:
            yield _sse({**last, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    await stream_chunks(run, SSE, chunks(), usage["prompt_tokens"], output.eval_count, _sse_error)
    return None
