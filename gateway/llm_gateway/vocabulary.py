"""The request vocabulary every part of the gateway speaks: what kind of request it is
(`Kind`), in which form an answer travels (`Form`), the priority classes, one spelling of
a model's name, and the millisecond clock of cache entries and limits.

It imports nothing of the gateway, so the cache, the router, the key ring and the request
path share these words without importing each other.
"""

from __future__ import annotations

import time
from enum import StrEnum


class Kind(StrEnum):
    """The endpoint a request came to, as the cache key and the replies see it."""

    GENERATE = "generate"
    CHAT = "chat"
    EMBED = "embed"
    EMBEDDINGS = "embeddings"
    OPENAI_CHAT = "openai-chat"
    OPENAI_COMPLETIONS = "openai-completions"
    OPENAI_EMBEDDINGS = "openai-embeddings"

    @property
    def is_embedding(self) -> bool:
        return self in _EMBEDDING_KINDS

    @property
    def is_openai(self) -> bool:
        return self.value.startswith("openai-")


_EMBEDDING_KINDS = frozenset({Kind.EMBED, Kind.EMBEDDINGS, Kind.OPENAI_EMBEDDINGS})


class Form(StrEnum):
    """How an answer's bytes are framed: a stream of JSON lines, one JSON object, or
    server-sent events (OpenAI's streams). The value is one byte of a cache entry."""

    NDJSON = "n"
    JSON = "j"
    SSE = "s"

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self]


_CONTENT_TYPES = {
    Form.NDJSON: "application/x-ndjson",
    Form.JSON: "application/json; charset=utf-8",
    Form.SSE: "text/event-stream",
}

# Highest first. A key's allowed classes come from the keys file; a request may ask
# for a lower one (X-LLM-Priority).
PRIORITIES: tuple[str, ...] = ("interactive", "batch")


def normalize_model(name: str) -> str:
    """`llama3.2` and `llama3.2:latest` are one model to Ollama."""
    return name if ":" in name else f"{name}:latest"


def now_ms() -> int:
    """Wall-clock milliseconds: the time cache entries, limits and quotas are kept in
    (Redis compares them across replicas, so it is the wall clock, not a monotonic one)."""
    return int(time.time() * 1000)
