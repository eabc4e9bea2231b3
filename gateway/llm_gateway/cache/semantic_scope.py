"""What a semantic hit may differ in: the last user message, and nothing else.

`question_of(kind, body)` splits a request into the text compared by meaning (the last
user message, or a completion's prompt) and everything else. The everything-else is
hashed exactly like the exact cache's key (`canonical.canonical_request`: model and
its digest, system prompt, earlier turns, tools, format, options), within the same
sharing namespace, into the *scope key*: two requests can only ever answer each other
semantically when their scope keys are equal. That also makes the candidate set tiny:
the entries stored under one scope key.

Requests with anything but plain text in the last turn (images, tool calls, a message
that is not the user's) are not eligible: their meaning is not in the text alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from llm_gateway.cache.canonical import KEY_VERSION, canonical_request
from llm_gateway.vocabulary import Kind

# The longest question compared by meaning (the embedding model reads ~256 tokens).
MAX_QUESTION_CHARS = 2000

_ELIGIBLE = frozenset({Kind.GENERATE, Kind.CHAT, Kind.OPENAI_CHAT, Kind.OPENAI_COMPLETIONS})


@dataclass(frozen=True, slots=True)
class Question:
    text: str  # the last user message
    rest: dict[str, Any]  # the body with that message emptied


def question_of(kind: Kind, body: Mapping[str, Any]) -> Question | None:
    """The last user message and the rest of the request, or None when not eligible."""
    if kind not in _ELIGIBLE:
        return None
    if kind in (Kind.GENERATE, Kind.OPENAI_COMPLETIONS):
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or body.get("images") or body.get("context"):
            return None
        return _question(prompt, {**body, "prompt": ""})
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    if last.get("images") or last.get("tool_calls"):
        return None
    content = last.get("content")
    if not isinstance(content, str):
        return None  # OpenAI content parts may carry images: not compared by meaning
    emptied = {**last, "content": ""}
    return _question(content, {**body, "messages": [*messages[:-1], emptied]})


def _question(text: str, rest: dict[str, Any]) -> Question | None:
    text = text.strip()
    if not text or len(text) > MAX_QUESTION_CHARS:
        return None
    return Question(text, rest)


def scope_key(
    kind: Kind,
    model: str,
    model_digest: str,
    question: Question,
    embed_model: str,
    embed_digest: str,
    namespace: str = "",
) -> str:
    """The key of the candidates a request may be answered from. The embedding model
    (and its digest) is part of it: vectors of another model are not comparable."""
    material = [
        KEY_VERSION, "semantic", kind.value, model, model_digest,
        canonical_request(kind, question.rest), embed_model, embed_digest,
    ]  # fmt: skip
    blob = orjson.dumps(material, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return f"llm:s{KEY_VERSION}:{namespace}{hashlib.sha256(blob).hexdigest()}"
