"""Start-up settings of the emulator: the knobs it returns to on `/_emulator/reset`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_MODELS: tuple[str, ...] = (
    "llama3.2:1b",
    "llama3.2",
    "llama3.1:8b",
    "nomic-embed-text",
    "all-minilm",
)


@dataclass(frozen=True)
class EmulatorSettings:
    host: str = "127.0.0.1"
    port: int = 11434
    # Words (tokens) per generated response.
    tokens: int = 8
    # Seconds before the first token (and before any byte of the response).
    first_token_delay: float = 0.0
    # Seconds between two tokens.
    token_delay: float = 0.0
    models: tuple[str, ...] = field(default=DEFAULT_MODELS)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            raise ValueError("tokens must be >= 0")
        if self.first_token_delay < 0 or self.token_delay < 0:
            raise ValueError("delays must be >= 0")
        if not self.models:
            raise ValueError("at least one model is needed")


def _model_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one model name")
    return names


def parse_args(argv: Sequence[str] | None = None) -> EmulatorSettings:
    parser = argparse.ArgumentParser(
        prog="python -m llm_emulator",
        description="An Ollama emulator speaking Ollama's HTTP API (for tests, benchmarks, demos).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--tokens", type=int, default=8, help="tokens per response")
    parser.add_argument("--first-token-delay", type=float, default=0.0, help="seconds")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds")
    parser.add_argument(
        "--models", type=_model_list, default=DEFAULT_MODELS, help="comma-separated model names"
    )
    args = parser.parse_args(argv)
    try:
        return EmulatorSettings(
            host=args.host,
            port=args.port,
            tokens=args.tokens,
            first_token_delay=args.first_token_delay,
            token_delay=args.token_delay,
            models=tuple(args.models),
        )
    except ValueError as exc:
        parser.error(str(exc))
