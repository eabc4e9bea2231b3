"""Start, watch, restart and stop the processes of a local run.

Each service runs in its own session (its own process group), so stopping it reaches
every process it spawned (nginx workers, uvicorn workers) and a Ctrl-C in the terminal
reaches only the stack, which then stops its services in reverse order. A service
that dies while the stack runs is restarted with a doubling backoff, like Docker's
`restart: unless-stopped`; once shutdown has begun nothing is restarted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from llm_stack.local.plan import ServiceSpec

# Every process of a run carries this variable (value: the run id), so a run's
# processes can be found by their environment even after they lost their parent.
RUN_MARKER_VARIABLE = "LLM_STACK_LOCAL_RUN"
# Variables of the caller's shell that would silently change a service's settings.
SCRUBBED_PREFIXES = ("GATEWAY_", "PROMETHEUS_MULTIPROC_DIR", "OLLAMA_")

FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
# A service that stayed up this long starts again from the first backoff.
STABLE_AFTER_SECONDS = 10.0
POLL_SECONDS = 0.1
LOG_TAIL_BYTES = 3000

Events = Callable[[str], None]


class StartFailed(Exception):
    def __init__(self, service: str, reason: str, log_tail: str) -> None:
        self.service = service
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(f"{service}: {reason}")


@dataclass
class Running:
    spec: ServiceSpec
    proc: subprocess.Popen[bytes]
    started_at: float
    restarts: int = 0
    backoff: float = FIRST_BACKOFF_SECONDS
    # Set while waiting to restart after an exit.
    restart_at: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


def base_environment(run_id: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env[RUN_MARKER_VARIABLE] = run_id
    return env


def log_tail(spec: ServiceSpec, limit: int = LOG_TAIL_BYTES) -> str:
    try:
        with spec.log.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def describe_exit(code: int) -> str:
    """`exited with code 3`, or `was killed by SIGKILL` (Popen's negative codes)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    """The processes of one run; thread-safe between the caller and its watch thread."""

    def __init__(
        self,
        run_id: str,
        events: Events,
        on_restart: Callable[[Running], None] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._env = base_environment(run_id, environ)
        self._events = events
        self._on_restart = on_restart
        self._lock = threading.Lock()
        self._running: list[Running] = []
        self._stopping = False
        self._watcher: threading.Thread | None = None
        self._wake = threading.Event()

    # -- start ---------------------------------------------------------------------------
    def _spawn(self, spec: ServiceSpec) -> subprocess.Popen[bytes]:
        with spec.log.open("ab") as log:
            return subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self._env, **spec.env},
                cwd=spec.cwd,
                start_new_session=True,
            )

    def start(self, spec: ServiceSpec) -> Running:
        with self._lock:
            if self._stopping:
                raise StartFailed(spec.name, "the stack is stopping", "")
            running = Running(spec, self._spawn(spec), time.monotonic())
            self._running.append(running)
            return running

    def wait_ready(
        self, group: Sequence[Running], cancelled: threading.Event | None = None
    ) -> None:
        """Until every service of `group` passes its check; `StartFailed` on death/timeout."""
        pending = list(group)
        deadlines = {id(r): time.monotonic() + r.spec.ready_timeout for r in pending}
        while pending:
            for running in list(pending):
                code = running.proc.poll()
                if code is not None:
                    raise StartFailed(
                        running.spec.name, describe_exit(code), log_tail(running.spec)
                    )
                if running.spec.ready.passed():
                    pending.remove(running)
                elif time.monotonic() > deadlines[id(running)]:
                    raise StartFailed(
                        running.spec.name,
                        f"not ready after {running.spec.ready_timeout:.0f}s "
                        f"({running.spec.ready.describe()})",
                        log_tail(running.spec),
                    )
            if pending:
                if cancelled is not None and cancelled.is_set():
                    raise StartFailed(pending[0].spec.name, "start-up interrupted", "")
                time.sleep(POLL_SECONDS)

    # -- watch and restart ---------------------------------------------------------------
    def watch(self) -> None:
        """Restart services that exit, from a background thread, until `stop_all`."""
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="supervisor", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while True:
            restarted: list[Running] = []
            with self._lock:
                if self._stopping:
                    return
                now = time.monotonic()
                for running in self._running:
                    self._check(running, now, restarted)
            for running in restarted:
                if self._on_restart is not None:
                    self._on_restart(running)
            self._wake.wait(POLL_SECONDS)

    def _check(self, running: Running, now: float, restarted: list[Running]) -> None:
        spec = running.spec
        if running.restart_at is None:
            code = running.proc.poll()
            if code is None:
                if now - running.started_at >= STABLE_AFTER_SECONDS:
                    running.backoff = FIRST_BACKOFF_SECONDS
                return
            # What the dead leader left behind (workers) must not hold its ports.
            _signal_group(running.pid, signal.SIGKILL)
            running.restart_at = now + running.backoff
            self._events(
                f"{spec.name} (pid {running.pid}) {describe_exit(code)}; "
                f"restarting in {running.backoff:.0f}s (log: {spec.log})"
            )
            running.backoff = min(running.backoff * 2, MAX_BACKOFF_SECONDS)
        elif now >= running.restart_at:
            try:
                running.proc = self._spawn(spec)
            except OSError as exc:
                running.restart_at = now + running.backoff
                self._events(f"{spec.name}: restart failed ({exc}); retrying")
                return
            running.restart_at = None
            running.started_at = now
            running.restarts += 1
            self._events(f"{spec.name} restarted (pid {running.pid}, restart {running.restarts})")
            restarted.append(running)

    # -- stop ------------------------------------------------------------------------------
    def services(self) -> list[Running]:
        with self._lock:
            return list(self._running)

    def stop_all(self) -> None:
        """Stop everything, newest first: SIGTERM to each group, SIGKILL after its grace."""
        with self._lock:
            self._stopping = True
            running = list(self._running)
        self._wake.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=10)
        for service in reversed(running):
            stop_service(service, self._events)


def stop_service(running: Running, events: Events) -> None:
    proc, spec = running.proc, running.spec
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=spec.stop_grace)
        except subprocess.TimeoutExpired:
            events(f"{spec.name} did not stop within {spec.stop_grace:.0f}s: killed")
    # Whatever is left of the group (a stuck leader, orphaned workers) goes now.
    _signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        events(f"{spec.name} (pid {proc.pid}) survived SIGKILL")
