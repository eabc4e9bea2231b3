"""Cache keys: a versioned SHA-256 of everything that changes a response, and nothing else.

Two requests share a key exactly when Ollama would answer them the same way: the
same endpoint kind, the same model *at the same digest*, the same prompt or messages
(images by hash), the same format/tools/think/raw/system/template/suffix, and the
same options once Ollama's defaults are filled in. `stream` and `keep_alive` only
change how and how long, not what, so they are left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from llm_gateway.vocabulary import Kind

KEY_VERSION = 1

# Ollama's api.DefaultOptions(): a request that omits an option gets these.
OLLAMA_DEFAULT_OPTIONS: Mapping[str, Any] = {
    "num_keep": 4,
    "seed": -1,
    "num_predict": -1,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0,
    "typical_p": 1,
    "repeat_last_n": 64,
    "temperature": 0.8,
    "repeat_penalty": 1.1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "num_ctx": 4096,
    "num_batch": 512,
    "num_gpu": -1,
    "num_thread": 0,
}

# What Ollama's OpenAI layer (openai/openai.go) sets when the client leaves it out.
_OPENAI_DEFAULTS: Mapping[str, Any] = {"temperature": 1, "top_p": 1}


# orjson writes integers of at most 64 bits; a float past that stays a float.
_INT_RANGE = (-(2**63), 2**64)


def _number(value: Any) -> Any:
    # 1 and 1.0 mean the same to Ollama; bools are ints to Python but not to Ollama.
    if isinstance(value, float) and value.is_integer() and _INT_RANGE[0] <= value < _INT_RANGE[1]:
        return int(value)
    return value


def _digest_text(value: Any) -> Any:
    if isinstance(value, str):
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value


def fill_options(options: Any, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    merged: dict[str, Any] = dict(OLLAMA_DEFAULT_OPTIONS)
    if overrides:
        merged.update(overrides)
    if isinstance(options, dict):
        for name, value in options.items():
            if value is not None:
                merged[name] = value
    return {name: _number(value) for name, value in merged.items()}


def _present(body: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """The named fields that carry a value (empty strings and false mean 'not set')."""
    out: dict[str, Any] = {}
    for name in names:
        value = body.get(name)
        if value is None or value == "" or value is False or value == []:
            continue
        out[name] = value
    return out


def _ollama_message(message: Any) -> Any:
    if not isinstance(message, dict):
        return message
    out = _present(message, "role", "content", "thinking", "tool_calls", "tool_name")
    images = message.get("images")
    if images:
        out["images"] = (
            [_digest_text(img) for img in images] if isinstance(images, list) else images
        )
    return out


def _openai_content(content: Any) -> Any:
    if not isinstance(content, list):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            parts.append({"type": "image_url", "image_url": _digest_text(url)})
        else:
            parts.append(part)
    return parts


def _openai_message(message: Any) -> Any:
    if not isinstance(message, dict):
        return message
    out = _present(message, "role", "name", "tool_calls", "tool_call_id", "reasoning")
    if "content" in message:
        out["content"] = _openai_content(message["content"])
    return out


def _openai_options(body: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    stop = body.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list):
        options["stop"] = stop
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    for name in ("temperature", "seed", "frequency_penalty", "presence_penalty", "top_p"):
        if body.get(name) is not None:
            options[name] = body[name]
    return fill_options(options, _OPENAI_DEFAULTS)


def canonical_request(kind: Kind, body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a request body that decide its response, in a stable form."""
    if kind is Kind.GENERATE:
        out = _present(body, "prompt", "suffix", "system", "template", "context", "raw", "format")
        out["think"] = body.get("think")
        images = body.get("images")
        if images:
            out["images"] = (
                [_digest_text(i) for i in images] if isinstance(images, list) else images
            )
        out["options"] = fill_options(body.get("options"))
        return out
    if kind is Kind.CHAT:
        messages = body.get("messages")
        out = _present(body, "tools", "format")
        out["think"] = body.get("think")
        out["messages"] = (
            [_ollama_message(m) for m in messages] if isinstance(messages, list) else messages
        )
        out["options"] = fill_options(body.get("options"))
        return out
    if kind is Kind.EMBED:
        out = _present(body, "input", "dimensions")
        out["truncate"] = body.get("truncate", True) is not False
        out["options"] = fill_options(body.get("options"))
        return out
    if kind is Kind.EMBEDDINGS:
        out = _present(body, "prompt")
        out["options"] = fill_options(body.get("options"))
        return out
    if kind is Kind.OPENAI_CHAT:
        messages = body.get("messages")
        out = _present(body, "tools", "tool_choice", "response_format", "reasoning_effort")
        out["reasoning"] = body.get("reasoning")
        out["messages"] = (
            [_openai_message(m) for m in messages] if isinstance(messages, list) else messages
        )
        out["options"] = _openai_options(body)
        return out
    if kind is Kind.OPENAI_COMPLETIONS:
        out = _present(body, "prompt", "suffix")
        out["options"] = _openai_options(body)
        return out
    # OPENAI_EMBEDDINGS: the encoding changes the bytes of the answer.
    out = _present(body, "input", "dimensions")
    out["encoding_format"] = body.get("encoding_format") or "float"
    return out


def cache_key(
    kind: Kind, model: str, model_digest: str, body: Mapping[str, Any], namespace: str = ""
) -> str:
    """`namespace` says who may share the entry ("" every key; `keys.cache_namespace`)."""
    material = [KEY_VERSION, kind.value, model, model_digest, canonical_request(kind, body)]
    blob = orjson.dumps(material, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return f"llm:c{KEY_VERSION}:{namespace}{hashlib.sha256(blob).hexdigest()}"


def effective_options(kind: Kind, body: Mapping[str, Any]) -> dict[str, Any]:
    if kind.is_openai:
        return _openai_options(body)
    return fill_options(body.get("options"))


def is_deterministic(kind: Kind, body: Mapping[str, Any]) -> bool:
    """Greedy decoding (temperature 0) or a fixed seed: the same request, the same answer."""
    if kind.is_embedding:
        return True
    options = effective_options(kind, body)
    temperature, seed = options.get("temperature"), options.get("seed")
    greedy = isinstance(temperature, int | float) and not isinstance(temperature, bool)
    if greedy and temperature == 0:
        return True
    return isinstance(seed, int) and not isinstance(seed, bool) and seed != -1


def is_load_only(kind: Kind, body: Mapping[str, Any]) -> bool:
    """Requests that only load or unload a model: their answer must never be cached."""
    if kind is Kind.GENERATE:
        return not body.get("prompt") and not body.get("images")
    if kind in (Kind.CHAT, Kind.OPENAI_CHAT):
        return not body.get("messages")
    if kind in (Kind.EMBED, Kind.OPENAI_EMBEDDINGS):
        return not body.get("input")
    if kind is Kind.EMBEDDINGS:
        return not body.get("prompt")
    return not body.get("prompt")
