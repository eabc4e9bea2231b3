"""One local run, start to stop: check, render, start in order, supervise, stop.

Everything that can be checked before a process starts is checked first (stack file,
binaries, the work dir lock, the configured edge ports, the rendered nginx.conf), so a
mistake costs nothing to clean up. Once processes run, every exit path goes through
`Supervisor.stop_all`: a failed start, Ctrl-C, SIGTERM, SIGHUP or a bug.
"""

from __future__ import annotations

import fcntl
import os
import secrets as random_tokens
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from llm_config.load import ConfigError

from llm_stack.local.binaries import find_binaries
from llm_stack.local.console import Console
from llm_stack.local.credentials import load_or_mint
from llm_stack.local.errors import LocalStackError
from llm_stack.local.files import check_nginx_conf, prepare_workdir, write_files
from llm_stack.local.layout import Layout, default_workdir
from llm_stack.local.ollama import DEFAULT_OLLAMA_URL, RealOllama, missing_models, probe_ollama
from llm_stack.local.outputs import build_outputs, remove_outputs, write_outputs
from llm_stack.local.plan import LocalPlan, LocalSecrets, make_plan
from llm_stack.local.ports import assign_ports, check_edge_ports
from llm_stack.local.source import StackSource, load_source, project_root, stack_file_for
from llm_stack.local.supervisor import RUN_MARKER_VARIABLE, StartFailed, Supervisor
from llm_stack.local.tls import ensure_certificate

EXIT_OK = 0
EXIT_START_FAILED = 1
EXIT_BAD_INPUT = 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class UpOptions:
    stack: str = "dev"
    config_path: Path | None = None
    free_ports: bool = False
    workdir: Path | None = None
    ollama_url: str = DEFAULT_OLLAMA_URL
    # Start emulators without probing for a real Ollama.
    emulate: bool = False
    outputs: Path | None = None
    cwd: Path = field(default_factory=Path.cwd)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP set `stop` (the main loop then shuts down in order)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def claim_workdir(layout: Layout) -> None:
    """Create the work dir, or accept an empty one or one a previous run made.

    The run makes the directory private (0700) and rewrites files in it, so a directory
    that holds anything else (`--workdir /tmp`, a home directory) is refused.
    """
    workdir = layout.workdir
    if workdir.exists():
        if not workdir.is_dir():
            raise LocalStackError(f"work dir {workdir} is not a directory", "give a directory")
        if any(workdir.iterdir()) and not layout.lock.exists():
            raise LocalStackError(
                f"work dir {workdir} is not empty and was not made by `llm-stack local up`",
                "give a new or empty directory with --workdir DIR (it is made private and "
                "filled with the stack's files)",
            )
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)


@contextmanager
def workdir_lock(layout: Layout) -> Iterator[None]:
    """One run per work dir: a second one would share ports, logs and Redis data."""
    claim_workdir(layout)
    handle: IO[str] = layout.lock.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            raise LocalStackError(
                f"another local stack (pid {owner}) already runs in {layout.workdir}",
                "stop it first (Ctrl-C in its terminal), or give this one --workdir DIR",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def resolve_source(options: UpOptions) -> StackSource:
    path = options.config_path or stack_file_for(options.stack, options.cwd)
    return load_source(path.resolve())


def resolve_workdir(options: UpOptions, source: StackSource) -> Path:
    if options.workdir is not None:
        return options.workdir.resolve()
    base = project_root(source.path.parent) or options.cwd
    return default_workdir(base, source.stack)


class LocalRun:
    """The state of one `local up`."""

    def __init__(self, options: UpOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.stop = threading.Event()
        # Inherited when set, so that a caller (the tests) can find every process of the run.
        self.run_id = os.environ.get(RUN_MARKER_VARIABLE) or random_tokens.token_hex(8)
        self._outputs_lock = threading.Lock()
        self._ready = False
        self.plan: LocalPlan | None = None
        self.secrets: LocalSecrets | None = None
        self.outputs_path: Path | None = None
        self.supervisor = Supervisor(self.run_id, console.event, on_restart=self._restarted)

    # -- preparation (nothing runs yet) ------------------------------------------------------
    def prepare(self, source: StackSource, layout: Layout, secrets: LocalSecrets) -> LocalPlan:
        options = self.options
        binaries = find_binaries()
        self.console.starting(source, layout.workdir)
        real: RealOllama | None = None
        if not options.emulate:
            real = probe_ollama(options.ollama_url)
        if not options.free_ports:
            check_edge_ports(source.config, source.path)
        emulators = 0 if real is not None else source.config.ollama.instances
        ports = assign_ports(
            source.config, use_free_edge_ports=options.free_ports, emulators=emulators
        )
        plan = make_plan(source, layout, ports, binaries, secrets, real)
        self.console.ollama(real, None if options.emulate else options.ollama_url, plan)
        if real is not None:
            for model in missing_models(real, source.config.ollama.models):
                self.console.line(
                    f"  note: {real.url} has not pulled {model}: `ollama pull {model}`"
                )
        prepare_workdir(plan)
        ensure_certificate(binaries.openssl, source.config.edge.hostname, layout.cert, layout.key)
        write_files(plan, secrets)
        check_nginx_conf(binaries.nginx, plan)
        return plan

    # -- running --------------------------------------------------------------------------------
    def start_services(self, plan: LocalPlan) -> bool:
        """Start tier by tier; False (everything stopped) when one fails or a stop came."""
        for tier in plan.tiers():
            if self.stop.is_set():
                return False
            began = time.monotonic()
            group = [self.supervisor.start(spec) for spec in tier]
            try:
                self.supervisor.wait_ready(group, cancelled=self.stop)
            except StartFailed as exc:
                spec = next((s for s in tier if s.name == exc.service), None)
                if self.stop.is_set():
                    self.console.line(f"  interrupted while starting {exc.service}")
                else:
                    self.console.failed(
                        exc.service, exc.reason, exc.log_tail, spec.log if spec else None
                    )
                return False
            took = time.monotonic() - began
            for running in group:
                self.console.service(running.spec, f"ready ({took:.1f}s, pid {running.pid})")
        return True

    def _write_outputs(self) -> None:
        assert self.plan is not None
        assert self.secrets is not None
        assert self.outputs_path is not None
        pids = [(r.spec, r.pid) for r in self.supervisor.services()]
        data = build_outputs(self.plan, self.secrets, pids, os.getpid())
        with self._outputs_lock:
            write_outputs(self.outputs_path, data)

    def _restarted(self, _running: object) -> None:
        if self._ready:
            self._write_outputs()

    def run(self) -> int:
        with stop_on_signals(self.stop):
            try:
                source = resolve_source(self.options)
                layout = Layout(resolve_workdir(self.options, source))
                with workdir_lock(layout):
                    return self._run_locked(source, layout)
            except ConfigError as exc:
                self.console.error(str(exc))
                return EXIT_BAD_INPUT
            except LocalStackError as exc:
                self.console.error(exc)
                return EXIT_BAD_INPUT

    def _run_locked(self, source: StackSource, layout: Layout) -> int:
        self.outputs_path = (self.options.outputs or layout.outputs).resolve()
        remove_outputs(self.outputs_path)  # a stale file would look like a ready stack
        secrets, kept = load_or_mint(layout.credentials)
        self.secrets = secrets
        if kept:
            self.console.line(f"  keys and Redis password kept from: {layout.credentials}")
        try:
            self.plan = self.prepare(source, layout, secrets)
            if not self.start_services(self.plan):
                if not self.stop.is_set():
                    self.console.line("  stopping everything that started")
                return EXIT_OK if self.stop.is_set() else EXIT_START_FAILED
            self._write_outputs()
            self._ready = True
            self.console.ready(self.plan, secrets, self.outputs_path)
            self.supervisor.watch()
            while not self.stop.wait(0.5):
                pass
            self.console.event("stopping: SIGTERM to every service, newest first")
            return EXIT_OK
        finally:
            self._ready = False
            self.supervisor.stop_all()
            remove_outputs(self.outputs_path)
            if self.plan is not None and self.stop.is_set():
                self.console.event("stopped")


def run_up(options: UpOptions, console: Console | None = None) -> int:
    """`llm-stack local up`: the exit status (0 after a requested stop)."""
    return LocalRun(options, console or Console()).run()
