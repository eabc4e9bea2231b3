"""Talking to a running local stack: the edge (TLS, keys), emulators, Prometheus, pids."""

from __future__ import annotations

import os
import signal
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from tests.e2e.stack_process import LocalStackProcess

MODEL = "llama3.2:1b"
# The second key of tests/e2e/Pulumi.e2e.yaml (3 requests per minute).
LIMITED_KEY = "llmsk-e2e-limited-test-key"
LIMITED_KEY_RPM = 3

T = TypeVar("T")


def generate_body(
    *, deterministic: bool = True, stream: bool = False, prompt: str = ""
) -> dict[str, Any]:
    """A generate request with a prompt no other request uses (unless given)."""
    options = {"temperature": 0} if deterministic else {"temperature": 0.8}
    return {
        "model": MODEL,
        "prompt": prompt or f"e2e {uuid.uuid4().hex}",
        "stream": stream,
        "options": options,
    }


def poll(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """The first truthy result of `check()`, polling until `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout}s (last error: {last_error})")
        time.sleep(interval)


@dataclass
class RunningStack:
    process: LocalStackProcess
    outputs: dict[str, Any]

    @property
    def local(self) -> dict[str, Any]:
        local: dict[str, Any] = self.outputs["local"]
        return local

    @property
    def url(self) -> str:
        return str(self.outputs["gatewayUrl"])

    @property
    def dev_key(self) -> str:
        return str(self.outputs["devApiKey"])

    def tls_context(self) -> ssl.SSLContext:
        """Trusts the stack's own certificate, and nothing else."""
        return ssl.create_default_context(cafile=self.local["caCert"])

    def client(
        self, source_address: str = "127.0.0.1", key: str | None = None, **kwargs: Any
    ) -> httpx.Client:
        """An HTTPS client of the edge, from `source_address`, with the dev key by default."""
        transport = httpx.HTTPTransport(verify=self.tls_context(), local_address=source_address)
        headers = {"Authorization": f"Bearer {key or self.dev_key}"}
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.url, transport=transport, headers=headers, **kwargs)

    # -- services ----------------------------------------------------------------------
    def refresh(self) -> dict[str, Any]:
        self.outputs = self.process.outputs()
        return self.outputs

    def services(self, role: str | None = None) -> list[dict[str, Any]]:
        return [s for s in self.refresh()["local"]["services"] if role in (None, s["role"])]

    def service(self, name: str) -> dict[str, Any]:
        for service in self.services():
            if service["name"] == name:
                return service
        raise KeyError(name)

    def kill(self, name: str) -> int:
        """SIGKILL a service's whole process group (as a crash would); its old pid."""
        pid = int(self.service(name)["pid"])
        os.killpg(pid, signal.SIGKILL)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 30.0) -> dict[str, Any]:
        """The service entry once the supervisor has restarted it and it answers."""

        def restarted() -> dict[str, Any] | None:
            service = self.service(name)
            return service if service["pid"] != old_pid else None

        return poll(restarted, timeout, f"{name} restarted by the supervisor")

    # -- emulators and Prometheus --------------------------------------------------------
    @property
    def emulator_urls(self) -> list[str]:
        return list(self.local["ollama"]["emulators"])

    def configure_emulators(self, **knobs: float) -> None:
        for url in self.emulator_urls:
            response = httpx.post(f"{url}/_emulator/config", json=knobs, timeout=10)
            response.raise_for_status()

    def prometheus(self, path: str, **params: str) -> Any:
        response = httpx.get(
            f"{self.local['prometheusUrl']}/api/v1/{path}", params=params, timeout=10
        )
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def gateway_metrics(self) -> list[str]:
        """The /metrics text of every gateway replica, read directly (internal port)."""
        return [
            httpx.get(f"http://127.0.0.1:{s['port']}/metrics", timeout=10).text
            for s in self.services("gateway")
        ]
