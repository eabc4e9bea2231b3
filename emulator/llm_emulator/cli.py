"""Command-line flags: `python -m llm_emulator --help` documents every one.

Without scheduler flags the emulator has infinite capacity (what the tests and the
gateway benchmark expect); `--ollama-defaults` turns on one real Ollama server on a
24 GB GPU; any explicit flag overrides either.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from llm_emulator.catalog import known_models
from llm_emulator.durations import parse_keep_alive_env
from llm_emulator.settings import CATALOG, DEFAULT_MODELS, EmulatorSettings, SchedulerSettings

_DESCRIPTION = """\
An Ollama emulator speaking Ollama's HTTP API (for tests, benchmarks, demos).
One process is one Ollama server with one GPU. Times given in seconds are simulated
time (see --time-scale); sizes are GB of 10^9 bytes except --vram (GiB)."""

_KNOWN = textwrap.fill(
    "Models with built-in sizes and speeds: " + ", ".join(known_models())
    + "; others get a generic spec scaled by --model-size.",
    width=88,
)  # fmt: skip
_EPILOG = f"""\
{_KNOWN}

Example, one 24 GB instance of a benchmark, 20x faster than real time:
  python -m llm_emulator --port 11500 --ollama-defaults --time-scale 20 \\
      --models gemma2:27b,mistral-small:24b,llama3.2 --context-length 4096
Scheduler state for tests and benchmarks: GET /_emulator/scheduler (not part of Ollama)."""


def _model_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one model name")
    return names


def _assignments(text: str) -> list[tuple[str, float]]:
    """`name=value[,name=value...]`."""
    pairs = []
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {part!r}")
        try:
            pairs.append((name.strip(), float(value)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    return pairs


def _speed(text: str) -> float | str:
    if text.strip().lower() == CATALOG:
        return CATALOG
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected tokens/s or {CATALOG!r}") from None


def _keep_alive(text: str) -> int:
    try:
        return parse_keep_alive_env(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llm_emulator",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument(
        "--models", type=_model_list, default=DEFAULT_MODELS, help="comma-separated model names"
    )

    knobs = parser.add_argument_group("pacing knobs (also settable at run time)")
    knobs.add_argument(
        "--tokens",
        type=int,
        default=8,
        metavar="N",
        help="tokens per response unless num_predict/max_tokens",
    )
    knobs.add_argument(
        "--first-token-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds added before the first token",
    )
    knobs.add_argument(
        "--token-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds added between two tokens",
    )

    timing = parser.add_argument_group("time")
    timing.add_argument(
        "--time-scale",
        type=float,
        metavar="N",
        default=1.0,
        help="run N times faster than real time; reported durations are real x N, as the "
        "simulated server would report them (default 1)",
    )

    sched = parser.add_argument_group(
        "scheduler (Ollama's environment variables; unset: unlimited unless --ollama-defaults)"
    )
    sched.add_argument(
        "--ollama-defaults",
        action="store_true",
        help="Ollama's defaults on one 24 GB GPU: num-parallel 1, max-loaded-models 3, "
        "max-queue 512, keep-alive 5m, vram 24, load 1 s + 0.6 s/GB, unload 1 s, "
        "catalogue speeds",
    )
    sched.add_argument(
        "--num-parallel", type=int, metavar="N", help="OLLAMA_NUM_PARALLEL; 0 = unlimited"
    )
    sched.add_argument(
        "--max-loaded-models", type=int, metavar="N", help="OLLAMA_MAX_LOADED_MODELS; 0 = no limit"
    )
    sched.add_argument(
        "--max-queue",
        type=int,
        metavar="N",
        help="OLLAMA_MAX_QUEUE: cold requests pending; 0 = no limit",
    )
    sched.add_argument(
        "--keep-alive",
        type=_keep_alive,
        metavar="DURATION",
        help="OLLAMA_KEEP_ALIVE: 5m, 30s, 0, -1 (default 5m)",
    )
    sched.add_argument(
        "--context-length",
        type=int,
        metavar="N",
        help="OLLAMA_CONTEXT_LENGTH: default num_ctx; 0 = by VRAM (4096, 32768 from 23 GiB)",
    )

    gpu = parser.add_argument_group("simulated GPU")
    gpu.add_argument(
        "--vram",
        type=float,
        metavar="GIB",
        help="GPU memory in GiB (24 = a 24 GB card); 0 = unlimited",
    )
    gpu.add_argument(
        "--load-base", type=float, metavar="SECONDS", help="seconds every model load takes"
    )
    gpu.add_argument(
        "--load-per-gb",
        type=float,
        metavar="SECONDS",
        help="further load seconds per GB of weights",
    )
    gpu.add_argument(
        "--unload-time",
        type=float,
        metavar="SECONDS",
        help="seconds until an unloaded model's VRAM is free",
    )
    gpu.add_argument(
        "--decode-speed",
        type=_speed,
        metavar="TPS",
        help="tokens/s of one slot alone; 0 = instant; 'catalog' = per-model figures",
    )
    gpu.add_argument(
        "--prompt-speed",
        type=_speed,
        metavar="TPS",
        help="prompt tokens/s of one slot alone; 0 = instant; 'catalog' = per-model figures",
    )
    gpu.add_argument(
        "--decode-slowdown",
        type=float,
        metavar="FRACTION",
        help="each further busy slot of a model slows its slots by this fraction (default 0.15)",
    )
    gpu.add_argument(
        "--slot-prompt-similarity",
        type=float,
        metavar="FRACTION",
        help="llama-server's --slot-prompt-similarity: share of a prompt a slot's cache "
        "must match to be reused (default 0.1; 0 = least recently used slot)",
    )
    gpu.add_argument(
        "--cache-ram",
        type=float,
        metavar="MIB",
        help="llama-server's --cache-ram: host-memory prompt cache in MiB; 0 = none "
        "(default 0, with --ollama-defaults 8192)",
    )
    gpu.add_argument(
        "--model-size",
        type=_assignments,
        action="append",
        metavar="NAME=GB",
        help="weights of a model in GB (repeatable, or comma-separated)",
    )
    gpu.add_argument(
        "--model-load-time",
        type=_assignments,
        action="append",
        metavar="NAME=SECONDS",
        help="whole load time of a model (repeatable)",
    )
    gpu.add_argument(
        "--model-decode-speed",
        type=_assignments,
        action="append",
        metavar="NAME=TPS",
        help="decode tokens/s of a model (repeatable)",
    )
    gpu.add_argument(
        "--model-prompt-speed",
        type=_assignments,
        action="append",
        metavar="NAME=TPS",
        help="prompt tokens/s of a model (repeatable)",
    )
    return parser


_SCALARS = {
    "num_parallel": "num_parallel",
    "max_loaded_models": "max_loaded_models",
    "max_queue": "max_queue",
    "keep_alive": "keep_alive_ns",
    "context_length": "context_length",
    "vram": "vram_gib",
    "load_base": "load_base",
    "load_per_gb": "load_per_gb",
    "unload_time": "unload_time",
    "decode_speed": "decode_speed",
    "prompt_speed": "prompt_speed",
    "decode_slowdown": "decode_slowdown",
    "slot_prompt_similarity": "slot_prompt_similarity",
    "cache_ram": "cache_ram_mib",
}
_PER_MODEL = {
    "model_size": "model_sizes",
    "model_load_time": "model_load_times",
    "model_decode_speed": "model_decode_speeds",
    "model_prompt_speed": "model_prompt_speeds",
}


def scheduler_settings(args: argparse.Namespace) -> SchedulerSettings:
    base = SchedulerSettings.ollama() if args.ollama_defaults else SchedulerSettings()
    changes: dict[str, Any] = {
        field: getattr(args, flag)
        for flag, field in _SCALARS.items()
        if getattr(args, flag) is not None
    }
    for flag, field in _PER_MODEL.items():
        given = getattr(args, flag)
        if given:
            changes[field] = {**getattr(base, field), **dict(p for ps in given for p in ps)}
    return replace(base, **changes)


def parse_args(argv: Sequence[str] | None = None) -> EmulatorSettings:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return EmulatorSettings(
            host=args.host,
            port=args.port,
            tokens=args.tokens,
            first_token_delay=args.first_token_delay,
            token_delay=args.token_delay,
            models=tuple(args.models),
            scheduler=scheduler_settings(args),
            time_scale=args.time_scale,
        )
    except ValueError as exc:
        parser.error(str(exc))
