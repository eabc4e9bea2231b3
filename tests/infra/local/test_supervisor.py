"""The supervisor with real processes: readiness, restarts with backoff, group stops."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_stack.local.plan import ServiceSpec
from llm_stack.local.readiness import ReadyCheck
from llm_stack.local.supervisor import (
    FIRST_BACKOFF_SECONDS,
    RUN_MARKER_VARIABLE,
    Running,
    StartFailed,
    Supervisor,
    base_environment,
    describe_exit,
)

from tests.e2e.stack_process import pid_alive
from tests.support.ports import free_port

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process

LISTEN = (
    "import socket, sys, time\n"
    "s = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
    "print('listening', flush=True)\n"
    "time.sleep(600)\n"
)


def _spec(
    tmp_path: Path,
    name: str,
    argv: list[str],
    port: int,
    *,
    ready_timeout: float = 20.0,
    stop_grace: float = 5.0,
) -> ServiceSpec:
    (tmp_path / "logs").mkdir(exist_ok=True)
    return ServiceSpec(
        name=name,
        role="test",
        tier=0,
        argv=tuple(argv),
        env={"EXTRA": "1"},
        port=port,
        ready=ReadyCheck([port]),
        ready_timeout=ready_timeout,
        stop_grace=stop_grace,
        log=tmp_path / "logs" / f"{name}.log",
        cwd=tmp_path,
    )


def listener(tmp_path: Path, name: str = "svc", **kwargs: float) -> ServiceSpec:
    port = free_port()
    return _spec(tmp_path, name, [sys.executable, "-c", LISTEN, str(port)], port, **kwargs)


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def supervisor(events: list[str]) -> Iterator[Supervisor]:
    supervisor = Supervisor("run-test", events.append)
    yield supervisor
    supervisor.stop_all()


def _wait(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_started_service_is_ready_with_the_run_marker_and_its_env(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    running = supervisor.start(listener(tmp_path))
    supervisor.wait_ready([running])
    environ = Path(f"/proc/{running.pid}/environ").read_bytes().split(b"\0")
    assert f"{RUN_MARKER_VARIABLE}=run-test".encode() in environ
    assert b"EXTRA=1" in environ
    assert os.getpgid(running.pid) == running.pid  # its own process group
    assert Path(f"/proc/{running.pid}/cwd").resolve() == tmp_path


def test_inherited_gateway_settings_do_not_leak_into_services() -> None:
    env = base_environment("r", {"GATEWAY_API_KEYS": "x", "PATH": "/bin", "OLLAMA_HOST": "y"})
    assert env == {"PATH": "/bin", RUN_MARKER_VARIABLE: "r"}


def test_a_service_that_exits_at_start_fails_with_its_log(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    spec = _spec(
        tmp_path, "broken", [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"], 1
    )
    running = supervisor.start(spec)
    with pytest.raises(StartFailed) as failed:
        supervisor.wait_ready([running])
    assert failed.value.reason == "exited with code 3"
    assert "bad config" in failed.value.log_tail


def test_a_service_that_never_gets_ready_times_out(tmp_path: Path, supervisor: Supervisor) -> None:
    spec = _spec(
        tmp_path, "silent", [sys.executable, "-c", "import time; time.sleep(60)"], free_port(),
        ready_timeout=0.5,
    )  # fmt: skip
    with pytest.raises(StartFailed, match="not ready after 0s"):
        supervisor.wait_ready([supervisor.start(spec)])


def test_a_cancelled_start_stops_waiting(tmp_path: Path, supervisor: Supervisor) -> None:
    spec = _spec(
        tmp_path, "slow", [sys.executable, "-c", "import time; time.sleep(60)"], free_port()
    )
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(StartFailed, match="interrupted"):
        supervisor.wait_ready([supervisor.start(spec)], cancelled=cancelled)


def test_a_dead_service_is_restarted_after_a_backoff_and_reported(
    tmp_path: Path, events: list[str]
) -> None:
    restarted: list[Running] = []
    supervisor = Supervisor("run-test", events.append, on_restart=restarted.append)
    try:
        running = supervisor.start(listener(tmp_path))
        supervisor.wait_ready([running])
        supervisor.watch()
        old_pid = running.pid
        killed_at = time.monotonic()
        os.killpg(old_pid, signal.SIGKILL)
        _wait(lambda: restarted)
        assert time.monotonic() - killed_at >= FIRST_BACKOFF_SECONDS * 0.9
        assert running.pid != old_pid
        assert running.restarts == 1
        supervisor.wait_ready([running])
        assert f"svc (pid {old_pid}) was killed by SIGKILL; restarting in 1s" in events[0]
        assert events[1].startswith(f"svc restarted (pid {running.pid}, restart 1)")
        # The next crash waits twice as long.
        os.killpg(running.pid, signal.SIGKILL)
        _wait(lambda: len(events) >= 3)
        assert "restarting in 2s" in events[2]
    finally:
        supervisor.stop_all()


def test_stop_reaches_the_whole_group_and_nothing_restarts_afterwards(
    tmp_path: Path, supervisor: Supervisor, events: list[str]
) -> None:
    port = free_port()
    # A leader with a child in its group (like nginx's workers, uvicorn's workers).
    script = f'sleep 600 & echo $! > {tmp_path}/child.pid; exec {sys.executable} -c "$0" {port}'
    spec = _spec(tmp_path, "group", ["/bin/sh", "-c", script, LISTEN], port)
    running = supervisor.start(spec)
    supervisor.wait_ready([running])
    supervisor.watch()
    child = int((tmp_path / "child.pid").read_text())
    assert pid_alive(child)
    supervisor.stop_all()
    assert not pid_alive(running.pid)
    _wait(lambda: not pid_alive(child))
    time.sleep(FIRST_BACKOFF_SECONDS + 0.5)
    assert not [e for e in events if "restarted" in e]
    assert not pid_alive(running.pid)


def test_a_service_ignoring_sigterm_is_killed_after_its_grace(
    tmp_path: Path, supervisor: Supervisor, events: list[str]
) -> None:
    port = free_port()
    stubborn = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + LISTEN
    spec = _spec(
        tmp_path, "stubborn", [sys.executable, "-c", stubborn, str(port)], port, stop_grace=0.5
    )
    running = supervisor.start(spec)
    supervisor.wait_ready([running])
    started = time.monotonic()
    supervisor.stop_all()
    assert time.monotonic() - started < 10
    assert not pid_alive(running.pid)
    assert any("did not stop within 0s: killed" in e or "within 1s" in e for e in events), events


def test_exit_descriptions() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(-15) == "was killed by SIGTERM"
