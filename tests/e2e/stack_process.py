"""`llm-stack local up` as a real child process, for the end-to-end and live tests.

The stack is started the way a user starts it (the `llm-stack` console script), and
found ready by its outputs file, which it writes only once every service is ready.
Every process of the run carries `LLM_STACK_LOCAL_RUN=<id>` in its environment, so the
tests can prove that nothing of it survives a stop, whoever its parent was.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

RUN_MARKER_VARIABLE = "LLM_STACK_LOCAL_RUN"
REPO = Path(__file__).resolve().parents[2]
E2E_STACK_FILE = Path(__file__).resolve().parent / "Pulumi.e2e.yaml"


def stack_command() -> list[str]:
    """The `llm-stack` console script of this venv (or `python -m llm_stack.cli`)."""
    script = Path(sys.executable).parent / "llm-stack"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "llm_stack.cli"]


def _stat_fields(entry: Path) -> list[str]:
    # Fields after the command name: state, ppid, pgrp, session, ...
    return (entry / "stat").read_text().rsplit(")", 1)[1].split()


def run_processes(
    run_id: str, workdir: Path | None, known_pids: Iterable[int] = ()
) -> list[tuple[int, str]]:
    """(pid, command line) of every live process of a run.

    A process belongs to the run when its environment carries the run id, its working
    directory or command line is in the work dir (every service starts there), it is one
    of `known_pids`, or it is in the session of any of those (every service leads its
    own session). nginx and redis-server overwrite their environment with their process
    title, hence the other signs. Without `workdir` (another run uses the same one),
    only the environment and `known_pids` count.
    """
    needle = f"{RUN_MARKER_VARIABLE}={run_id}".encode()
    where = str(workdir).encode() if workdir is not None else None
    table: dict[int, tuple[str, int, str]] = {}
    roots = set(known_pids)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            fields = _stat_fields(entry)
            raw = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if fields[0] == "Z":
            continue  # exited, waiting to be reaped by its parent
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        table[pid] = (fields[0], int(fields[3]), cmdline)
        try:
            cwd = os.readlink(entry / "cwd").encode()
        except OSError:
            cwd = b""
        inside = where is not None and (
            cwd == where or cwd.startswith(where + b"/") or where in raw
        )
        if inside or needle in environ.split(b"\0"):
            roots.add(pid)
    return sorted(
        (pid, cmdline)
        for pid, (_, session, cmdline) in table.items()
        if pid in roots or session in roots
    )


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class LocalStackProcess:
    """One `llm-stack local up`; `stop()` is idempotent and never leaks a process."""

    def __init__(
        self,
        workdir: Path,
        stack_file: Path | None = E2E_STACK_FILE,
        args: Sequence[str] = ("--free-ports", "--emulate"),
        env: dict[str, str] | None = None,
        owns_workdir: bool = True,
    ) -> None:
        self.workdir = workdir
        # False when another run already uses the work dir: its processes are not ours.
        self.owns_workdir = owns_workdir
        self.outputs_path = workdir / "outputs.json"
        self.run_id = uuid.uuid4().hex
        argv = [*stack_command(), "local", "up", "--workdir", str(workdir)]
        if stack_file is not None:
            argv += ["--config", str(stack_file)]
        self.argv = [*argv, *args]
        self.env = {**os.environ, **(env or {}), RUN_MARKER_VARIABLE: self.run_id}
        self.console_path = workdir.parent / f"{workdir.name}.console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # Every service pid the outputs ever named (restarts change them).
        self.seen_pids: set[int] = set()

    def start(self) -> LocalStackProcess:
        with self.console_path.open("wb") as console:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO,
                start_new_session=True,
            )
        return self

    def run(self, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run to completion (for commands that must fail fast); output captured."""
        try:
            return subprocess.run(
                self.argv, env=self.env, cwd=REPO, capture_output=True, text=True,
                timeout=timeout, check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            self.kill_leftovers()

    def console(self) -> str:
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 90.0) -> dict[str, Any]:
        """The outputs, once the stack wrote them (it does so only when all is ready)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.outputs_path.exists():
                return self.outputs()
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"local stack exited with {self.proc.returncode} before it was ready:\n"
                    f"{self.console()[-4000:]}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"local stack not ready after {timeout}s:\n{self.console()}")
            time.sleep(0.1)

    def outputs(self) -> dict[str, Any]:
        """The current outputs file (rewritten with new pids when a service restarts)."""
        result: dict[str, Any] = json.loads(self.outputs_path.read_text())
        self.seen_pids.update(s["pid"] for s in result["local"]["services"])
        return result

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait; then make sure no process of the run is left either way."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            self.kill_leftovers()
        return self.proc.returncode

    def leftovers(self) -> list[tuple[int, str]]:
        return run_processes(self.run_id, self._own_workdir, self.seen_pids)

    @property
    def _own_workdir(self) -> Path | None:
        return self.workdir if self.owns_workdir else None

    def kill_leftovers(self) -> None:
        """A safety net for failed tests: the assertions use `leftovers()`."""
        for pid, _ in run_processes(self.run_id, self._own_workdir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
