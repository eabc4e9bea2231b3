"""A real nginx on loopback, serving the config `llm_nginx` renders, on free ports.

Everything lives in one directory per server (config, pid, temp paths, logs), so any
number can run side by side. The config is checked with `nginx -t` before it starts,
so a broken render fails with nginx's own message rather than a timeout.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trustme
from llm_config.model import StackConfig
from llm_nginx import loopback_topology, render_nginx_conf
from llm_nginx.topology import STUB_STATUS_PATH, NginxTopology

from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess


def nginx_binary() -> str:
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx)")
    return binary


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate it signed, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_files(directory: Path, names: Sequence[str] = ("localhost", "127.0.0.1")) -> TlsFiles:
    ca = trustme.CA()
    issued = ca.issue_cert(*names)
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "edge.crt", directory / "edge.key")
    ca.cert_pem.write_to_path(str(files.ca_file))
    files.cert_file.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files.key_file))
    return files


def check_config(conf_path: Path, prefix: Path, user: str | None = None) -> None:
    """`nginx -t` on a config file; raises with nginx's output when it is rejected."""
    result = subprocess.run(
        [nginx_binary(), "-t", "-q", "-p", str(prefix), "-c", str(conf_path), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
        user=user,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"nginx -t rejected {conf_path}:\n{result.stderr}{result.stdout}")


class NginxServer:
    """One nginx process: the edge, the balancer and stub_status of one rendered config."""

    def __init__(
        self,
        workdir: Path,
        config: StackConfig,
        tls: TlsFiles,
        gateways: Sequence[str],
        ollamas: Sequence[str],
        worker_processes: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.config = config
        self.tls = tls
        workdir.mkdir(parents=True, exist_ok=True)
        self.topology: NginxTopology = loopback_topology(
            workdir,
            gateways,
            ollamas,
            https_port=free_port(),
            http_port=free_port(),
            balancer_port=free_port(),
            status_port=free_port(),
            cert_path=tls.cert_file,
            key_path=tls.key_file,
            worker_processes=worker_processes,
        )
        self.conf_path = workdir / "nginx.conf"
        self._proc: ManagedProcess | None = None

    # -- addresses ---------------------------------------------------------------------
    def _port(self, listen: str) -> int:
        return int(listen.rsplit(":", 1)[1])

    @property
    def https_port(self) -> int:
        return self._port(self.topology.edge_https_listen)

    @property
    def http_port(self) -> int:
        return self._port(self.topology.edge_http_listen)

    @property
    def balancer_port(self) -> int:
        return self._port(self.topology.balancer_listen)

    @property
    def status_port(self) -> int:
        return self._port(self.topology.status_listen)

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def balancer_url(self) -> str:
        return f"http://127.0.0.1:{self.balancer_port}"

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}{STUB_STATUS_PATH}"

    @property
    def access_log_path(self) -> Path:
        return Path(self.topology.access_log)

    @property
    def error_log_path(self) -> Path:
        return Path(self.topology.error_log)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> NginxServer:
        self.conf_path.write_text(render_nginx_conf(self.config, self.topology))
        check_config(self.conf_path, self.workdir)
        argv = [
            nginx_binary(),
            "-p", str(self.workdir),
            "-c", str(self.conf_path),
            "-e", str(self.error_log_path),
            "-g", "daemon off;",
        ]  # fmt: skip
        self._proc = ManagedProcess(argv, self.https_port, self.workdir / "nginx.out").start()
        for port in (self.http_port, self.balancer_port, self.status_port):
            wait_for_port(port)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            # SIGTERM is nginx's fast shutdown: open streams are cut, which tests want.
            self._proc.stop()
            self._proc = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    # -- clients and logs ------------------------------------------------------------------
    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTPS client for the edge that trusts the test CA (and nothing else)."""
        kwargs.setdefault("timeout", 15.0)
        trust = ssl.create_default_context(cafile=str(self.tls.ca_file))
        return httpx.Client(base_url=self.https_url, verify=trust, **kwargs)

    def access_log(self) -> list[dict[str, Any]]:
        try:
            text = self.access_log_path.read_text()
        except FileNotFoundError:
            return []
        return [orjson.loads(line) for line in text.splitlines() if line.strip()]

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first access-log entry matching `predicate` (nginx writes it after the
        response has gone out, so it may trail the client by a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.access_log():
                if predicate(entry):
                    return entry
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching access-log entry in {self.access_log_path}")
            time.sleep(0.05)

    def error_log(self) -> str:
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


NginxFactory = Callable[..., NginxServer]


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A test CA and a certificate for localhost/127.0.0.1, shared by the session."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def nginx_factory(tmp_path: Path, tls_files: TlsFiles) -> Iterator[NginxFactory]:
    """Start nginx servers for a config and upstreams; all are stopped after the test."""
    started: list[NginxServer] = []

    def start(
        config: StackConfig,
        gateways: Sequence[str],
        ollamas: Sequence[str],
        worker_processes: int | None = None,
    ) -> NginxServer:
        workdir = tmp_path / f"nginx-{len(started)}"
        server = NginxServer(workdir, config, tls_files, gateways, ollamas, worker_processes)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
