"""Start-up settings of the emulator: the knobs it returns to on `/_emulator/reset`.

`EmulatorSettings()` is the emulator as the tests and the gateway benchmark know it:
infinite capacity, instant loads, pacing by the knobs only. `SchedulerSettings.ollama()`
is one real Ollama server on one 24 GB GPU with Ollama's defaults (see `scheduler.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from llm_emulator.catalog import canonical_name

DEFAULT_MODELS: tuple[str, ...] = (
    "llama3.2:1b",
    "llama3.2",
    "llama3.1:8b",
    "nomic-embed-text",
    "all-minilm",
)

# A speed of "catalog" takes each model's figure from the built-in catalogue.
CATALOG: Literal["catalog"] = "catalog"
Speed = float | Literal["catalog"]

_FIVE_MINUTES_NS = 300_000_000_000


@dataclass(frozen=True)
class SchedulerSettings:
    """Ollama's scheduler knobs and the simulated GPU. 0 means unlimited where noted.

    - `vram_gib`: GPU memory in GiB as nvidia-smi counts it (24 for a 24 GB card); 0:
      unlimited, every model fits beside the others.
    - `num_parallel` (OLLAMA_NUM_PARALLEL): requests computing at once per loaded model;
      0: unlimited. Embedding models get 1 whenever it is set, as in Ollama.
    - `max_loaded_models` (OLLAMA_MAX_LOADED_MODELS), `max_queue` (OLLAMA_MAX_QUEUE):
      0: no limit.
    - `keep_alive_ns` (OLLAMA_KEEP_ALIVE): idle time before a model unloads; 0: at once;
      durations.FOREVER_NS: never.
    - `context_length` (OLLAMA_CONTEXT_LENGTH): num_ctx when a request sets none; 0:
      Ollama's VRAM tiers (4096 below 23 GiB or with unlimited VRAM, 32768 from 23 GiB,
      262144 from 47 GiB).
    - `load_base` + `load_per_gb` x weights GB: seconds to load a model; `model_load_times`
      overrides that per model (seconds for the whole load).
    - `unload_time`: seconds between a runner stopping and its VRAM being free (Ollama
      waits for the GPU's free memory to recover, typically 0.5-1.5 s).
    - `decode_speed`, `prompt_speed`: one slot's tokens/s with the GPU to itself; 0:
      instant; CATALOG: the catalogue's per-model figures. `model_decode_speeds`,
      `model_prompt_speeds` override them per model.
    - `decode_slowdown`: each further slot computing on the same model slows every slot
      of that model by this fraction (batched decoding reads the weights once per step);
      slots of different models take turns on the GPU (see `speed.py`).
    - `model_sizes`: weights in GB (10^9 bytes, as `ollama list` shows) by model name.
    - `slot_prompt_similarity` (llama-server `--slot-prompt-similarity`, 0.1): the
      share of a prompt an idle slot's cache must match to be picked over the least
      recently used slot; 0: always the least recently used.
    - `cache_ram_mib` (llama-server `--cache-ram`): the host-memory prompt cache in MiB
      of KV cache; 0: none. Ollama passes no `--cache-ram`, so llama-server's 8192.
      See `prompt_cache.py`.
    """

    vram_gib: float = 0.0
    num_parallel: int = 0
    max_loaded_models: int = 0
    max_queue: int = 0
    keep_alive_ns: int = _FIVE_MINUTES_NS
    context_length: int = 0
    load_base: float = 0.0
    load_per_gb: float = 0.0
    unload_time: float = 0.0
    decode_speed: Speed = 0.0
    prompt_speed: Speed = 0.0
    decode_slowdown: float = 0.15
    slot_prompt_similarity: float = 0.1
    cache_ram_mib: float = 0.0
    model_sizes: Mapping[str, float] = field(default_factory=dict)
    model_load_times: Mapping[str, float] = field(default_factory=dict)
    model_decode_speeds: Mapping[str, float] = field(default_factory=dict)
    model_prompt_speeds: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def ollama(cls, **changes: Any) -> SchedulerSettings:
        """Ollama 0.32's defaults on one 24 GB GPU, with `changes` on top.

        NUM_PARALLEL 1, MAX_LOADED_MODELS 3 (per GPU), MAX_QUEUE 512, KEEP_ALIVE 5m,
        context by VRAM tier, llama-server's 8 GiB host prompt cache; loads at 1 s +
        0.6 s/GB (a local NVMe disk, llama-server start and CUDA init), 1 s for VRAM to
        recover after an unload, catalogue speeds.
        """
        return replace(_OLLAMA, **changes)

    def __post_init__(self) -> None:
        _at_least(0, vram_gib=self.vram_gib, load_base=self.load_base)
        _at_least(0, load_per_gb=self.load_per_gb, unload_time=self.unload_time)
        _at_least(0, decode_slowdown=self.decode_slowdown, context_length=self.context_length)
        _at_least(0, num_parallel=self.num_parallel, max_queue=self.max_queue)
        _at_least(0, max_loaded_models=self.max_loaded_models, keep_alive_ns=self.keep_alive_ns)
        _at_least(0, slot_prompt_similarity=self.slot_prompt_similarity)
        _at_least(0, cache_ram_mib=self.cache_ram_mib)
        if self.slot_prompt_similarity > 1:
            raise ValueError("slot_prompt_similarity must be <= 1")
        for name in ("decode_speed", "prompt_speed"):
            value = getattr(self, name)
            if value != CATALOG and not (isinstance(value, int | float) and value >= 0):
                raise ValueError(f"{name} must be tokens/s >= 0 (0: instant) or {CATALOG!r}")
        for name in _PER_MODEL:
            object.__setattr__(self, name, _per_model(name, getattr(self, name)))

    @property
    def unlimited(self) -> bool:
        """No limit anywhere: no VRAM budget, slots, model count or queue bound."""
        return not (self.vram_gib or self.num_parallel or self.max_loaded_models)

    def model_size_bytes(self) -> dict[str, int]:
        return {name: int(gb * 1_000_000_000) for name, gb in self.model_sizes.items()}


def _at_least(bound: float, **values: float) -> None:
    for name, value in values.items():
        if value < bound:
            raise ValueError(f"{name} must be >= {bound}")


_PER_MODEL = ("model_sizes", "model_load_times", "model_decode_speeds", "model_prompt_speeds")


def _per_model(what: str, values: Mapping[str, float]) -> dict[str, float]:
    """Per-model values keyed by canonical name (`llama3.2` is `llama3.2:latest`)."""
    result: dict[str, float] = {}
    for raw, value in values.items():
        name = canonical_name(raw)
        if name is None:
            raise ValueError(f"{what}: {raw!r} is not a model name")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{what}: {raw} needs a number")
        if value <= 0:
            raise ValueError(f"{what}: {raw} must be > 0")
        result[name] = float(value)
    return result


_OLLAMA = SchedulerSettings(
    vram_gib=24.0,
    num_parallel=1,
    max_loaded_models=3,
    max_queue=512,
    keep_alive_ns=_FIVE_MINUTES_NS,
    load_base=1.0,
    load_per_gb=0.6,
    unload_time=1.0,
    decode_speed=CATALOG,
    prompt_speed=CATALOG,
    cache_ram_mib=8192.0,
)


@dataclass(frozen=True)
class EmulatorSettings:
    host: str = "127.0.0.1"
    port: int = 11434
    # Words (tokens) per generated response, unless num_predict / max_tokens says.
    tokens: int = 8
    # Seconds before the first token (and before any byte of the response).
    first_token_delay: float = 0.0
    # Seconds between two tokens.
    token_delay: float = 0.0
    models: tuple[str, ...] = field(default=DEFAULT_MODELS)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    # Simulated seconds per real second (see clock.py).
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            raise ValueError("tokens must be >= 0")
        if self.first_token_delay < 0 or self.token_delay < 0:
            raise ValueError("delays must be >= 0")
        if not self.models:
            raise ValueError("at least one model is needed")
        if not self.time_scale > 0:
            raise ValueError("time scale must be > 0")
