"""An Ollama emulator: Ollama's exact HTTP API without model weights.

For tests, benchmarks and the keyless local demo. `create_app(settings)` gives the ASGI
app; `main(argv)` serves it (`python -m llm_stack.emulator`). Knobs, fault injection
and counters are under `/_emulator/` (see `control.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

from llm_stack.emulator.app import EmulatorApp, create_app
from llm_stack.emulator.settings import DEFAULT_MODELS, EmulatorSettings


def main(argv: Sequence[str] | None = None) -> int:
    from llm_stack.emulator.server import main as serve_main

    return serve_main(argv)


__all__ = ["DEFAULT_MODELS", "EmulatorApp", "EmulatorSettings", "create_app", "main"]
