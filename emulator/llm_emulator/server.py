"""Serving the emulator with uvicorn (uvloop + httptools, no access log): the CLI entry."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from llm_emulator.app import create_app
from llm_emulator.cli import parse_args
from llm_emulator.settings import EmulatorSettings


class _QuietCuts(logging.Filter):
    """A deliberately cut stream is a test fault, not an application error worth logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, settings: EmulatorSettings) -> None:
        super().__init__(config)
        self.emulator_settings = settings

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)  # type: ignore[arg-type]
        if self.started:
            s = self.emulator_settings
            print(f"ollama emulator listening on http://{s.host}:{s.port}", flush=True)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after shutdown; a clean stop exits 0 here.
        self._captured_signals.clear()


def serve(settings: EmulatorSettings) -> int:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=75,
        backlog=4096,
    )
    server = _Server(config, settings)
    logging.getLogger("uvicorn.error").addFilter(_QuietCuts())
    server.run()
    return 0 if server.started else 1


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    return serve(settings)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
