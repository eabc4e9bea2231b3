"""Serving the emulator with uvicorn (uvloop + httptools, no access log): the CLI entry.

It stops the way Ollama does. On SIGINT or SIGTERM, Ollama's `server/routes.go`
(v0.32.15, the pinned image) calls `srvr.Close()`, not `Shutdown()`: Go closes the
listener and every connection at once, so a stream in flight is cut mid-body (no
final chunk, no `done: true` line) whatever grace the container runtime gives. Only
a drain before the stop (the gateway's) saves the streams of an instance.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from llm_emulator.app import create_app
from llm_emulator.cli import parse_args
from llm_emulator.settings import EmulatorSettings

# How long the handlers of aborted connections get to notice (they do at their next
# await); not a grace for the requests, which are already cut.
DISCONNECT_SECONDS = 1.0


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

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Ollama's `http.Server.Close()`, not uvicorn's graceful wait: stop listening,
        then abort every connection, idle or mid-stream, without flushing."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.transport.abort()
        # The handlers see their client gone and end as a disconnect (their own
        # watcher cancels them); only the rest is cancelled here.
        tasks = list(self.server_state.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=DISCONNECT_SECONDS)
            for task in pending:
                task.cancel()

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
