"""A real Ollama emulator process (`python -m llm_emulator`) on a free port.

`emulator`: one process for the whole session, `reset()` before each test (a single
HTTP call), restarted if a test stopped or killed it. `emulator_factory`: independent
extra emulators (e.g. several upstreams behind nginx), stopped after the test.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

KNOB_FLAGS = {
    "tokens": "--tokens",
    "first_token_delay": "--first-token-delay",
    "token_delay": "--token-delay",
    "models": "--models",
}


class Emulator:
    """One emulator process; knobs given here are its start-up (and reset) values."""

    def __init__(self, workdir: Path, port: int | None = None, **knobs: Any) -> None:
        unknown = set(knobs) - set(KNOB_FLAGS)
        if unknown:
            raise TypeError(f"unknown emulator knobs: {sorted(unknown)}")
        self.port = port or free_port()
        self.workdir = workdir
        self.knobs = knobs
        self.log_path = workdir / f"emulator-{self.port}.log"
        self._proc: ManagedProcess | None = None
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "llm_emulator", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port)]
        for name, value in self.knobs.items():
            if name == "models" and not isinstance(value, str):
                value = ",".join(value)
            argv += [KNOB_FLAGS[name], str(value)]
        return argv

    # -- process ---------------------------------------------------------------

    def start(self) -> Emulator:
        self._proc = ManagedProcess(self.argv(), self.port, self.log_path).start()
        return self

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code (0 for a clean stop)."""
        self._close_client()
        return self._proc.stop() if self._proc is not None else None

    def kill(self) -> None:
        self._close_client()
        if self._proc is not None:
            self._proc.kill()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    @property
    def process(self) -> ManagedProcess | None:
        return self._proc

    def log_text(self) -> str:
        return self._proc.log_text() if self._proc is not None else ""

    # -- control API -------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=10.0)
        return self._client

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _control(self, method: str, action: str, body: dict[str, Any] | None = None) -> Any:
        response = self.client.request(method, f"/_emulator/{action}", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"emulator {action}: {response.status_code} {response.text}")
        return response.json()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "stats")
        return result

    def count(self, method_path: str) -> int:
        """Requests seen for e.g. `"POST /api/chat"`."""
        return int(self.stats()["requests"].get(method_path, 0))

    def reset(self) -> None:
        self._control("POST", "reset")

    def configure(self, **knobs: float) -> dict[str, Any]:
        """Run-time knobs: tokens, first_token_delay, token_delay."""
        result: dict[str, Any] = self._control("POST", "config", knobs)
        return result

    def faults(self, **faults: Any) -> dict[str, Any]:
        """Arm faults: fail_next, fail_status, cut_next, cut_after, error_next, error_after,
        hang_next (-1: all), fail_message, error_message, paths (which paths draw them)."""
        result: dict[str, Any] = self._control("POST", "faults", faults)
        return result

    def set_digest(self, model: str, digest: str) -> None:
        self._control("POST", "models", {"name": model, "digest": digest})


EmulatorFactory = Callable[..., Emulator]


@pytest.fixture(scope="session")
def _session_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator(tmp_path_factory.mktemp("emulator")).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator(_session_emulator: Emulator) -> Emulator:
    """The session's emulator with counters, faults and knobs reset."""
    if not _session_emulator.running:
        _session_emulator.start()
    _session_emulator.reset()
    return _session_emulator


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[EmulatorFactory]:
    """Start independent emulators: `emulator_factory(tokens=4, first_token_delay=0.05)`."""
    started: list[Emulator] = []

    def start(**knobs: Any) -> Emulator:
        emulator = Emulator(tmp_path, **knobs).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
