"""The models the emulator serves: names, digests (changeable: a simulated re-pull), metadata.

Names resolve like Ollama resolves them: `llama3.2` is `llama3.2:latest`, case does not
matter, and `library/` or `registry.ollama.ai/library/` prefixes name the same model.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, replace

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(?::[a-z0-9._-]+)?$")


@dataclass(frozen=True)
class ModelSpec:
    """What `/api/tags`, `/api/show` and `/api/ps` report about one model."""

    family: str
    parameter_size: str
    quantization_level: str
    size: int
    embedding_length: int
    context_length: int
    embedding_only: bool = False


# Real figures of the published models, so listings look like a real server's.
_KNOWN: dict[str, ModelSpec] = {
    "llama3.2:1b": ModelSpec("llama", "1.2B", "Q8_0", 1321098329, 2048, 131072),
    "llama3.2:latest": ModelSpec("llama", "3.2B", "Q4_K_M", 2019393189, 3072, 131072),
    "llama3.1:8b": ModelSpec("llama", "8.0B", "Q4_K_M", 4920753328, 4096, 131072),
    "nomic-embed-text:latest": ModelSpec("nomic-bert", "137M", "F16", 274302450, 768, 2048, True),
    "all-minilm:latest": ModelSpec("bert", "23M", "F16", 45960996, 384, 512, True),
}
_GENERIC_LLM = ModelSpec("llama", "3.2B", "Q4_K_M", 2019393189, 384, 131072)
_GENERIC_EMBED = ModelSpec("bert", "23M", "F16", 45960996, 384, 512, True)


def canonical_name(name: str) -> str | None:
    """`Llama3.2` → `llama3.2:latest`; None when the name is not a model name at all."""
    name = name.strip().lower()
    for prefix in ("registry.ollama.ai/", "library/"):
        name = name.removeprefix(prefix)
    if not name or not _NAME_RE.match(name):
        return None
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def default_digest(canonical: str) -> str:
    return hashlib.sha256(f"llm-stack-emulator:{canonical}".encode()).hexdigest()


def is_digest(value: str) -> bool:
    return bool(_DIGEST_RE.match(value))


def _spec_for(canonical: str) -> ModelSpec:
    known = _KNOWN.get(canonical)
    if known is not None:
        return known
    if "embed" in canonical or "minilm" in canonical or "bge" in canonical:
        return _GENERIC_EMBED
    return _GENERIC_LLM


@dataclass(frozen=True)
class ModelEntry:
    name: str  # canonical, e.g. "llama3.2:latest"
    digest: str
    modified_ns: int
    spec: ModelSpec


class Catalog:
    """The installed models, in listing order (most recently modified first)."""

    def __init__(self, names: tuple[str, ...], now_ns: int | None = None) -> None:
        start = time.time_ns() if now_ns is None else now_ns
        self._entries: dict[str, ModelEntry] = {}
        for index, raw in enumerate(names):
            name = canonical_name(raw)
            if name is None:
                raise ValueError(f"{raw!r} is not a model name")
            # A minute apart, first listed newest, so the order of /api/tags is stable.
            modified = start - index * 60_000_000_000
            self._entries[name] = ModelEntry(name, default_digest(name), modified, _spec_for(name))

    def lookup(self, name: str) -> ModelEntry | None:
        canonical = canonical_name(name)
        return None if canonical is None else self._entries.get(canonical)

    def entries(self) -> list[ModelEntry]:
        return sorted(self._entries.values(), key=lambda e: e.modified_ns, reverse=True)

    def set_digest(self, name: str, digest: str) -> ModelEntry:
        """A re-pull: new digest, modified now; adds the model when it is not installed."""
        canonical = canonical_name(name)
        if canonical is None:
            raise ValueError(f"{name!r} is not a model name")
        if not is_digest(digest):
            raise ValueError("digest must be 64 lowercase hex characters")
        now = time.time_ns()
        current = self._entries.get(canonical)
        if current is None:
            entry = ModelEntry(canonical, digest, now, _spec_for(canonical))
        else:
            entry = replace(current, digest=digest, modified_ns=now)
        self._entries[canonical] = entry
        return entry
