"""A real redis-server on a free loopback port (no fake Redis anywhere)."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess


class RedisServer:
    """One redis-server process that tests may stop and start again on the same port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--protected-mode", "yes",
        ]  # fmt: skip
        self._proc = ManagedProcess(argv, self.port, self.workdir / "redis.log").start()
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self.resume()  # a frozen server cannot act on SIGTERM
            self._proc.stop()
            self._proc = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        if self._proc is not None:
            self._proc.signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the session; tests that stop it must start it again."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test alone (for tests that stop and restart it)."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
