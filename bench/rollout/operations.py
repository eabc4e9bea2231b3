"""The day-two operations, each the planned way and the naive way.

Planned, as docs/operations.md tells an operator:

- replace an Ollama instance: `llm-gateway drain --instance NAME --wait` (the real
  CLI, through a gateway's admin API), stop it, start it, and once it answers
  `llm-gateway drain --instance NAME --undrain`; done when every gateway replica
  lists it healthy again;
- replace a gateway replica: SIGTERM (it stops accepting, finishes its streams
  within its grace, exits); the edge retries refused requests on the other replica;
- renew the edge's certificate: new files in place, `nginx -s reload`.

Naive, as a stop without draining does it: the Ollama instance stopped as is (its
SIGTERM cuts its streams, as Ollama's does), the gateway killed (`docker kill`, or a
stop whose grace is shorter than a stream), the edge stopped and started again to
read its new certificate (`docker stop` of the nginx image: SIGQUIT, 10 s, SIGKILL).

A replaced process is started again by the local stack's supervisor, with the same
command line: a new process on the same port, as Docker starts a new container.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import trustme

from bench.rollout.stack import LocalStack, Service

READY_TIMEOUT = 60.0
DRAIN_TIMEOUT = 60.0
# `docker stop`'s default grace before SIGKILL.
DOCKER_STOP_GRACE = 10.0
# The stack's stop timeout for a gateway: its shutdown grace (stack.py) + 5 s.
GATEWAY_STOP_GRACE = 25.0


@dataclass(frozen=True)
class Operation:
    """What was done, when (seconds since the load's start), and what it printed."""

    name: str
    target: str
    way: str  # planned | naive
    started: float
    ended: float
    notes: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def _wait(what: str, check: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie until the supervisor reaps it: gone for this purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] == "Z"
    except OSError:
        return True


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Operator:
    def __init__(self, stack: LocalStack, clock: Callable[[], float], ca: trustme.CA) -> None:
        self.stack = stack
        self.clock = clock
        self.ca = ca
        self._renewals = 0
        # Services that outlived their stop grace and were killed.
        self.killed: list[str] = []

    # -- helpers ------------------------------------------------------------------------
    def _drain_cli(self, *args: str) -> str:
        argv = [sys.executable, "-m", "llm_gateway", "drain", "--url", self.stack.gateway_url(0)]
        env = {**os.environ, "LLM_GATEWAY_ADMIN_KEY": self.stack.admin_key}
        result = subprocess.run(
            [*argv, *args], env=env, capture_output=True, text=True, timeout=DRAIN_TIMEOUT + 30,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"llm-gateway drain {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def _instance_states(self, name: str) -> list[str]:
        states = []
        for index in range(len(self.stack.services("gateway"))):
            try:
                reply = httpx.get(
                    self.stack.gateway_url(index) + "/admin/instances",
                    headers={"Authorization": f"Bearer {self.stack.admin_key}"},
                    timeout=5,
                )
                listing = reply.json().get("instances", [])
            except (httpx.HTTPError, ValueError):
                return ["unknown"]
            states += [str(e.get("state")) for e in listing if e.get("name") == name]
        return states

    def _restart(self, service: Service, sig: int, grace: float | None = None) -> Service:
        """Stop `service` with `sig` (SIGKILL after `grace`, as Docker's stop timeout
        does), wait for its successor."""
        os.killpg(service.pid, sig)
        if grace is not None:
            try:
                _wait(f"{service.name} to stop", lambda: _gone(service.pid), grace)
            except RuntimeError:
                self.killed.append(service.name)
                os.killpg(service.pid, signal.SIGKILL)
        _wait(f"{service.name} to stop", lambda: _gone(service.pid))
        _wait(
            f"{service.name} to be started again",
            lambda: self.stack.service(service.name).pid != service.pid,
        )
        return self.stack.service(service.name)

    def _timed(self, name: str, target: str, way: str, body: Callable[[], str]) -> Operation:
        started = self.clock()
        notes = body()
        return Operation(name, target, way, started, self.clock(), notes)

    # -- Ollama -------------------------------------------------------------------------
    def replace_ollama(self, name: str, planned: bool) -> Operation:
        def planned_way() -> str:
            marks = [self.clock()]
            old = self.stack.service(name)
            instance = self.stack.instance_name(old)
            self._drain_cli("--instance", instance, "--wait", "--timeout", f"{DRAIN_TIMEOUT:g}")
            marks.append(self.clock())
            new = self._restart(old, signal.SIGTERM)
            _wait(f"{name} to answer", lambda: _answers(f"http://127.0.0.1:{new.port}/api/version"))
            self.stack.pace(new)
            marks.append(self.clock())
            self._drain_cli("--instance", instance, "--undrain")
            _wait(
                f"{instance} to be healthy on every gateway",
                lambda: set(self._instance_states(instance)) == {"healthy"},
            )
            marks.append(self.clock())
            drain, restart, readmit = (b - a for a, b in itertools.pairwise(marks))
            return f"drain {drain:.1f}s, stop and start {restart:.1f}s, re-admit {readmit:.1f}s"

        def naive_way() -> str:
            old = self.stack.service(name)
            new = self._restart(old, signal.SIGTERM)
            _wait(f"{name} to answer", lambda: _answers(f"http://127.0.0.1:{new.port}/api/version"))
            self.stack.pace(new)
            return "stopped without a drain"

        way = "planned" if planned else "naive"
        return self._timed("replace Ollama instance", name, way,
                           planned_way if planned else naive_way)  # fmt: skip

    # -- gateways -----------------------------------------------------------------------
    def replace_gateway(self, name: str, planned: bool) -> Operation:
        def body() -> str:
            old = self.stack.service(name)
            if planned:
                new = self._restart(old, signal.SIGTERM, GATEWAY_STOP_GRACE)
            else:
                new = self._restart(old, signal.SIGKILL)
            _wait(f"{name} to answer", lambda: _answers(f"http://127.0.0.1:{new.port}/health"))
            if not planned:
                return "SIGKILL"
            if name in self.killed:
                return f"SIGTERM, then SIGKILL: still running after {GATEWAY_STOP_GRACE:g}s"
            return "SIGTERM: its streams finished within the grace"

        way = "planned" if planned else "naive"
        return self._timed("replace gateway replica", name, way, body)

    # -- the edge -----------------------------------------------------------------------
    def _new_certificate(self) -> str:
        """Put a new certificate and key in place (renamed over the old: atomic)."""
        self._renewals += 1
        leaf = self.ca.issue_cert("localhost", "127.0.0.1")
        cert, key = self.stack.layout.cert, self.stack.layout.key
        for path, data in (
            (cert, b"".join(blob.bytes() for blob in leaf.cert_chain_pems)),
            (key, leaf.private_key_pem.bytes()),
        ):
            staged = path.with_suffix(path.suffix + ".new")
            staged.write_bytes(data)
            staged.chmod(0o600)
            staged.replace(path)
        return leaf.cert_chain_pems[0].bytes().decode()

    def _served_certificate(self) -> str | None:
        port = int(self.stack.edge_url.rsplit(":", 1)[1].split("/")[0])
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                der = tls.getpeercert(binary_form=True)
        except OSError:
            return None
        return ssl.DER_cert_to_PEM_cert(der) if der else None

    def renew_edge_certificate(self, planned: bool) -> Operation:
        def body() -> str:
            pem = self._new_certificate()
            expected = ssl.PEM_cert_to_DER_cert(pem)

            def serves_new() -> bool:
                served = self._served_certificate()
                return served is not None and ssl.PEM_cert_to_DER_cert(served) == expected

            if planned:
                result = subprocess.run(
                    self.stack.reload_argv(), capture_output=True, text=True, timeout=30,
                    check=False,
                )  # fmt: skip
                if result.returncode != 0:
                    raise RuntimeError(f"nginx -s reload: {result.stderr.strip()}")
            else:
                self._restart(self.stack.service("nginx"), signal.SIGQUIT, DOCKER_STOP_GRACE)
            _wait("the edge to serve the new certificate", serves_new)
            return "nginx -s reload" if planned else "stopped (SIGQUIT) and started again"

        way = "planned" if planned else "naive"
        return self._timed("renew the edge certificate", "nginx", way, body)


def trusted_ca(workdir: Path) -> tuple[trustme.CA, Path]:
    """The CA the renewed certificates come from, written where the client can trust it."""
    ca = trustme.CA()
    path = workdir / "renewal-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path
