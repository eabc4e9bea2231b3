"""An Ollama emulator: Ollama's exact HTTP API without model weights.

A stand-alone service used by the local stack (when no real Ollama answers), the
tests and the benchmarks. `create_app(settings)` gives the ASGI app; `main(argv)`
serves it (`python -m llm_emulator`). Knobs, fault injection and counters are under
`/_emulator/`. It imports none of the project's other packages.

Modules, from the wire inwards:

- `server.py`: uvicorn; `cli.py`: the flags; `settings.py`: start-up settings.
- `app.py`: routing like Ollama's router; `exchange.py`: one request/response,
  disconnects, precise pauses.
- `ollama_generate.py`, `ollama_embed.py`, `ollama_models.py`: Ollama's native API;
  `openai_generate.py`, `openai_resources.py`: its OpenAI-compatible API.
- `inference.py`: request parsing and faults the inference endpoints share;
  `pacing.py`: a request's time (scheduling, slot, prompt, tokens) and its stats;
  `generate.py`: the deterministic text, tokens and embeddings; `minilm.py`: the
  real all-MiniLM-L6-v2 (numpy), served as all-minilm when its package is installed.
- `scheduler.py`: Ollama's scheduler (pending queue, loads, eviction, keep-alive);
  `runner.py`: a loaded model (runner options, memory, slots); `speed.py`: how fast
  the simulated GPU computes when slots share it; `prompt_cache.py`: llama-server's
  slot and host-memory prompt caches (what part of a prompt is evaluated);
  `clock.py`: the time scale; `durations.py`: Go durations (keep_alive).
- `catalog.py`: the models served, their digests, sizes and speeds; `state.py`: knobs,
  faults, counters, the scheduler; `control.py`: the `/_emulator/` control API.
- `errors.py`, `wire.py`: Ollama's and OpenAI's error shapes, content types, timestamps.
"""

from __future__ import annotations

from collections.abc import Sequence

from llm_emulator.app import EmulatorApp, create_app
from llm_emulator.settings import DEFAULT_MODELS, EmulatorSettings, SchedulerSettings


def main(argv: Sequence[str] | None = None) -> int:
    from llm_emulator.server import main as serve_main

    return serve_main(argv)


__all__ = [
    "DEFAULT_MODELS",
    "EmulatorApp",
    "EmulatorSettings",
    "SchedulerSettings",
    "create_app",
    "main",
]
