"""An Ollama emulator: Ollama's exact HTTP API without model weights.

A stand-alone service used by the local stack (when no real Ollama answers), the
tests and the benchmarks. `create_app(settings)` gives the ASGI app; `main(argv)`
serves it (`python -m llm_emulator`). Knobs, fault injection and counters are under
`/_emulator/`. It imports none of the project's other packages.

Modules, from the wire inwards:

- `server.py`: the CLI entry, uvicorn; `settings.py`: start-up settings and flags.
- `app.py`: routing like Ollama's router; `exchange.py`: one request/response,
  disconnects, precise pauses.
- `ollama_generate.py`, `ollama_embed.py`, `ollama_models.py`: Ollama's native API;
  `openai_generate.py`, `openai_resources.py`: its OpenAI-compatible API.
- `inference.py`: what the generation endpoints share (parsing, stats, pacing);
  `generate.py`: the deterministic text, tokens and embeddings.
- `catalog.py`: the models served and their digests; `state.py`: knobs, faults,
  counters, loaded models; `control.py`: the `/_emulator/` control API.
- `errors.py`, `wire.py`: Ollama's and OpenAI's error shapes, content types, timestamps.
"""

from __future__ import annotations

from collections.abc import Sequence

from llm_emulator.app import EmulatorApp, create_app
from llm_emulator.settings import DEFAULT_MODELS, EmulatorSettings


def main(argv: Sequence[str] | None = None) -> int:
    from llm_emulator.server import main as serve_main

    return serve_main(argv)


__all__ = ["DEFAULT_MODELS", "EmulatorApp", "EmulatorSettings", "create_app", "main"]
