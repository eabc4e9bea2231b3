"""Fixtures of the nginx tests: a real nginx (tests.support.nginx_server) and stand-ins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.nginx.stacks import small_stack
from tests.support.nginx_server import NginxServer, TlsFiles
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, python_module

__all__ = ["EchoBackend", "backend", "echo_backend_factory", "generous_edge", "generous_limits"]

REPO_ROOT = Path(__file__).resolve().parents[2]


class EchoBackend:
    """tests/nginx/echo_backend.py as a child process on a free port."""

    def __init__(self, workdir: Path, status: int = 200) -> None:
        self.port = free_port()
        self._proc = ManagedProcess(
            python_module(
                "tests.nginx.echo_backend", "--port", str(self.port), "--status", str(status)
            ),
            self.port,
            workdir / f"echo-{self.port}.log",
            env={"PYTHONPATH": str(REPO_ROOT)},
            cwd=REPO_ROOT,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> EchoBackend:
        self._proc.start()
        return self

    def stop(self) -> None:
        self._proc.stop()


EchoFactory = Callable[..., EchoBackend]


@pytest.fixture
def echo_backend_factory(tmp_path: Path) -> Iterator[EchoFactory]:
    started: list[EchoBackend] = []

    def start(status: int = 200) -> EchoBackend:
        """A stand-in answering 200 (echo), or `status` with an error to every request."""
        backend = EchoBackend(tmp_path, status).start()
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoBackend]:
    """One echo stand-in for a module's shared edge."""
    server = EchoBackend(tmp_path_factory.mktemp("echo")).start()
    yield server
    server.stop()


def generous_limits(max_body_mb: int) -> dict[str, int]:
    """Edge settings with the per-client rate limit out of reach of any test."""
    return {"rateLimitPerSecond": 10000, "rateLimitBurst": 10000, "maxBodyMb": max_body_mb}


def generous_edge(
    tmp_path_factory: pytest.TempPathFactory,
    tls_files: TlsFiles,
    backend: EchoBackend,
    max_body_mb: int,
) -> Iterator[NginxServer]:
    """A module's edge in front of `backend`, for tests that do not depend on the rate
    limit; the body fixture of a module-scoped `edge` (`yield from`)."""
    server = NginxServer(
        tmp_path_factory.mktemp("edge"),
        small_stack(edge=generous_limits(max_body_mb)),
        tls_files,
        gateways=[backend.address],
        ollamas=["127.0.0.1:9"],
    ).start()
    yield server
    server.stop()
