"""The stack under test: `llm-stack local up` with this bench's stack file, on loopback.

Two emulated Ollama instances behind model-aware routing, two gateway replicas, the
nginx TLS edge, Redis: the local stack's own processes, started by its own CLI
(`--emulate --free-ports`) in a scratch work dir. Its outputs file names every
process (pid, port, log) and is rewritten when the supervisor restarts one, which is
how a "replace" happens here: the old process stops, the supervisor starts a new one
with the same command line, as Docker starts a new container from the same inputs.

The emulators answer instantly by default; the bench slows their tokens down through
their control API (`/_emulator/config`) so that streams last long enough to be cut.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from llm_gateway.contract import digest_of, mint_key
from llm_stack.local.layout import Layout

MODEL = "llama3.2:1b"
# Emulator pacing: a stream of TOKENS tokens lasts about TOKENS * TOKEN_DELAY seconds.
TOKENS = 40
TOKEN_DELAY = 0.05
FIRST_TOKEN_DELAY = 0.05
START_TIMEOUT = 120.0


def stack_file(load_key: str, admin_key: str) -> dict[str, Any]:
    """The bench's stack: 2 instances, 2 gateways, model-aware routing, keys that never
    limit (only the operations may fail a request)."""
    unlimited = {"requestsPerMinute": 1_000_000, "maxConcurrent": 10_000}
    return {
        "config": {
            "llm-stack:environment": "test",
            "llm-stack:namePrefix": "rollout",
            "llm-stack:ollama": {
                "instances": 2,
                "models": [MODEL],
                "numParallel": 8,
                "maxQueue": 512,
                "maxLoadedModels": 1,
            },
            "llm-stack:gateway": {
                "replicas": 2,
                "routing": "model-aware",
                "cacheMode": "off",
                "pollSeconds": 0.2,
                "shutdownGraceSeconds": 20,
                "requestsPerMinute": 1_000_000,
                "maxConcurrentPerKey": 10_000,
            },
            "llm-stack:edge": {
                "hostname": "localhost",
                "rateLimitPerSecond": 1000,
                "rateLimitBurst": 1000,
                "hstsMaxAgeSeconds": 0,
            },
            "llm-stack:monitoring": {"grafana": {"enabled": False}},
            "llm-stack:apiKeys": {
                "load": {"digest": digest_of(load_key), **unlimited},
                "ops": {"digest": digest_of(admin_key), "admin": True, **unlimited},
            },
        }
    }


def reload_argv(layout: Layout, nginx: str = "nginx") -> list[str]:
    """`nginx -s reload` for a local stack's edge (the prefix and conf it runs with)."""
    return [nginx, "-p", str(layout.nginx), "-c", str(layout.nginx_conf), "-e", "stderr",
            "-s", "reload"]  # fmt: skip


@dataclass(frozen=True)
class Service:
    name: str
    role: str
    port: int
    pid: int
    log: Path


class LocalStack:
    """One `llm-stack local up` process and what its outputs say."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.layout = Layout(workdir / "stack")
        self.stack_path = workdir / "Pulumi.rollout.yaml"
        self.outputs_path = workdir / "outputs.json"
        self.log_path = workdir / "local-up.log"
        self.load_key = mint_key()
        self.admin_key = mint_key()
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> LocalStack:
        self.stack_path.write_text(yaml.safe_dump(stack_file(self.load_key, self.admin_key)))
        argv = [
            sys.executable, "-m", "llm_stack.cli", "local", "up",
            "--config", str(self.stack_path), "--emulate", "--free-ports",
            "--workdir", str(self.layout.workdir), "--outputs", str(self.outputs_path),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.outputs_path.exists():
            if self._proc.poll() is not None:
                raise RuntimeError(f"llm-stack local up exited: see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"llm-stack local up not ready in {START_TIMEOUT:.0f}s")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)

    # -- what runs ----------------------------------------------------------------------
    def outputs(self) -> dict[str, Any]:
        # Rewritten whole on each restart; a read mid-write retries.
        for _ in range(50):
            try:
                data: dict[str, Any] = json.loads(self.outputs_path.read_text())
                return data
            except (json.JSONDecodeError, FileNotFoundError):
                time.sleep(0.05)
        raise RuntimeError(f"cannot read {self.outputs_path}")

    def services(self, role: str) -> list[Service]:
        entries = self.outputs()["local"]["services"]
        return [
            Service(e["name"], e["role"], int(e["port"]), int(e["pid"]), Path(e["log"]))
            for e in entries
            if e["role"] == role
        ]

    def service(self, name: str) -> Service:
        (found,) = [s for s in self.services_all() if s.name == name]
        return found

    def services_all(self) -> list[Service]:
        entries = self.outputs()["local"]["services"]
        return [
            Service(e["name"], e["role"], int(e["port"]), int(e["pid"]), Path(e["log"]))
            for e in entries
        ]

    @property
    def edge_url(self) -> str:
        return str(self.outputs()["gatewayUrl"])

    def reload_argv(self, nginx: str = "nginx") -> list[str]:
        return reload_argv(self.layout, nginx)

    def gateway_url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.service(f'gateway-{index}').port}"

    def instance_name(self, emulator: Service) -> str:
        """The gateway's name of an instance: host:port of its URL."""
        return f"127.0.0.1:{emulator.port}"

    # -- the emulators' pacing --------------------------------------------------------
    def pace(self, emulator: Service) -> None:
        knobs: Mapping[str, float] = {
            "tokens": TOKENS,
            "token_delay": TOKEN_DELAY,
            "first_token_delay": FIRST_TOKEN_DELAY,
        }
        url = f"http://127.0.0.1:{emulator.port}/_emulator/config"
        httpx.post(url, json=dict(knobs), timeout=10).raise_for_status()

    def pace_all(self) -> None:
        for emulator in self.services("ollama"):
            self.pace(emulator)
