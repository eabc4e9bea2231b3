"""The models the emulator serves: names, digests (changeable: a simulated re-pull), metadata.

Names resolve like Ollama resolves them: `llama3.2` is `llama3.2:latest`, case does not
matter, and `library/` or `registry.ollama.ai/library/` prefixes name the same model.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(?::[a-z0-9._-]+)?$")


@dataclass(frozen=True)
class ModelSpec:
    """What `/api/tags`, `/api/show` and `/api/ps` report about one model, and how it runs.

    `size` is the weights file (what `ollama list` shows). A loaded runner adds its KV
    cache, `kv_bytes_per_token` (f16 K and V: 2 x layers x kv_heads x head_dim x 2 bytes)
    for each token of num_ctx x num_parallel. `decode_tps` and `prompt_tps` are one
    slot's speeds with the GPU to itself, on a 24 GB card of the RTX 3090/4090 class
    with llama.cpp at Q4 (public llama.cpp benchmarks, rounded); they apply when
    speeds come from the catalogue (`--decode-speed catalog`).
    """

    family: str
    parameter_size: str
    quantization_level: str
    size: int
    embedding_length: int
    context_length: int
    embedding_only: bool = False
    kv_bytes_per_token: int = 0
    decode_tps: float = 0.0
    prompt_tps: float = 0.0


def _llm(
    family: str, params: str, quant: str, size: int, embedding: int, context: int,
    kv: int, decode: float, prompt: float,
) -> ModelSpec:  # fmt: skip
    return ModelSpec(family, params, quant, size, embedding, context, False, kv, decode, prompt)


def _embedder(
    family: str, params: str, size: int, embedding: int, context: int, kv: int, prompt: float
) -> ModelSpec:
    return ModelSpec(family, params, "F16", size, embedding, context, True, kv, 0.0, prompt)


# Published models with their real sizes (bytes, as `ollama list` shows them to about
# 0.1 GB) and architectures, so listings and memory look like a real server's.
_KNOWN: dict[str, ModelSpec] = {
    "llama3.2:1b": _llm("llama", "1.2B", "Q8_0", 1321098329, 2048, 131072, 32768, 250, 12000),
    "llama3.2:latest": _llm("llama", "3.2B", "Q4_K_M", 2019393189, 3072, 131072, 114688, 190, 8000),
    "llama3.1:8b": _llm("llama", "8.0B", "Q4_K_M", 4920753328, 4096, 131072, 131072, 130, 5000),
    "qwen2.5:14b": _llm("qwen2", "14.8B", "Q4_K_M", 8988124069, 5120, 32768, 196608, 75, 2800),
    "mistral-small:24b": _llm(
        "llama", "23.6B", "Q4_K_M", 14333926144, 5120, 32768, 163840, 48, 1800
    ),
    "gemma2:27b": _llm("gemma2", "27.2B", "Q4_0", 15628387458, 4608, 8192, 376832, 42, 1500),
    "qwen2.5:32b": _llm("qwen2", "32.8B", "Q4_K_M", 19851336256, 5120, 32768, 262144, 36, 1200),
    "nomic-embed-text:latest": _embedder("nomic-bert", "137M", 274302450, 768, 2048, 36864, 20000),
    "all-minilm:latest": _embedder("bert", "23M", 45960996, 384, 512, 9216, 40000),
}
# Unknown models: a 3B llama with short (384-wide) embedding vectors.
_GENERIC_LLM = replace(_KNOWN["llama3.2:latest"], embedding_length=384)
_GENERIC_EMBED = _KNOWN["all-minilm:latest"]
_GB = 1_000_000_000


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


def known_models() -> list[str]:
    """The models with built-in figures, as short names (`llama3.2`, `gemma2:27b`)."""
    return [name.removesuffix(":latest") for name in _KNOWN]


def _is_embedder(canonical: str) -> bool:
    return "embed" in canonical or "minilm" in canonical or "bge" in canonical


def spec_for(canonical: str, size: int | None = None) -> ModelSpec:
    """The spec of a model, its weights resized to `size` bytes when given.

    A known model keeps its architecture (KV cache per token, context) when resized; an
    unknown one gets a generic spec whose KV cache and speeds scale with its size (an
    8B Q4 model: 4.9 GB, 128 KiB of KV cache per token, 130 tokens/s).
    """
    known = _KNOWN.get(canonical)
    if known is not None:
        return known if size is None else replace(known, size=size)
    if _is_embedder(canonical):
        return _GENERIC_EMBED if size is None else replace(_GENERIC_EMBED, size=size)
    if size is None:
        return _GENERIC_LLM
    gigabytes = max(size / _GB, 0.01)
    return replace(
        _GENERIC_LLM,
        parameter_size=f"{gigabytes * 1.6:.1f}B",
        size=size,
        kv_bytes_per_token=max(int(size / 37_500), 1024),
        decode_tps=min(250.0, round(640 / gigabytes, 1)),
        prompt_tps=min(12000.0, round(25000 / gigabytes)),
    )


@dataclass(frozen=True)
class ModelEntry:
    name: str  # canonical, e.g. "llama3.2:latest"
    digest: str
    modified_ns: int
    spec: ModelSpec


class Catalog:
    """The installed models, in listing order (most recently modified first)."""

    def __init__(
        self,
        names: tuple[str, ...],
        now_ns: int | None = None,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        """`sizes`: weights in bytes by canonical name, overriding the built-in figures."""
        start = time.time_ns() if now_ns is None else now_ns
        self._sizes = dict(sizes or {})
        self._entries: dict[str, ModelEntry] = {}
        for index, raw in enumerate(names):
            name = canonical_name(raw)
            if name is None:
                raise ValueError(f"{raw!r} is not a model name")
            # A minute apart, first listed newest, so the order of /api/tags is stable.
            modified = start - index * 60_000_000_000
            spec = spec_for(name, self._sizes.get(name))
            self._entries[name] = ModelEntry(name, default_digest(name), modified, spec)

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
            spec = spec_for(canonical, self._sizes.get(canonical))
            entry = ModelEntry(canonical, digest, now, spec)
        else:
            entry = replace(current, digest=digest, modified_ns=now)
        self._entries[canonical] = entry
        return entry
