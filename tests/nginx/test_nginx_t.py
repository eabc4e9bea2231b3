"""`nginx -t` with the real binary on every config the renderer can be asked for."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from llm_config.model import StackConfig
from llm_nginx import NginxTopology, container_topology, loopback_topology, render_nginx_conf

from tests.nginx.stacks import STACK_FILES, small_stack, stack_file
from tests.support.nginx_server import TlsFiles, check_config, make_tls_files, nginx_binary
from tests.support.ports import free_port, wait_for_port

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process


def _topology(directory: Path, tls: TlsFiles, gateways: int, ollamas: int) -> NginxTopology:
    return loopback_topology(
        directory,
        [f"127.0.0.1:{18000 + i}" for i in range(gateways)],
        [f"127.0.0.1:{11434 + i}" for i in range(ollamas)],
        https_port=free_port(),
        http_port=free_port(),
        balancer_port=free_port(),
        status_port=free_port(),
        cert_path=tls.cert_file,
        key_path=tls.key_file,
    )


def _check(directory: Path, config: StackConfig, topology: NginxTopology) -> str:
    text = render_nginx_conf(config, topology)
    conf = directory / "nginx.conf"
    conf.write_text(text)
    check_config(conf, directory)
    return text


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_every_stack_file_renders_a_config_nginx_accepts(
    path: Path, tmp_path: Path, tls_files: TlsFiles
) -> None:
    from llm_config import load_stack_file

    config = load_stack_file(path)
    topology = _topology(
        tmp_path, tls_files, gateways=config.gateway.replicas, ollamas=config.ollama.instances
    )
    text = _check(tmp_path, config, topology)
    assert text.count("max_fails=") == config.gateway.replicas + config.ollama.instances


def test_the_stack_files_include_dev_and_prod() -> None:
    assert {p.name for p in STACK_FILES} >= {"Pulumi.dev.yaml", "Pulumi.prod.yaml"}


@pytest.mark.parametrize(
    ("gateways", "ollamas"),
    [(1, 1), (1, 8), (3, 1), (4, 8), (16, 16)],
    ids=["1gw-1ollama", "1gw-8ollama", "3gw-1ollama", "4gw-8ollama", "16gw-16ollama"],
)
def test_pool_sizes(gateways: int, ollamas: int, tmp_path: Path, tls_files: TlsFiles) -> None:
    _check(tmp_path, small_stack(), _topology(tmp_path, tls_files, gateways, ollamas))


def test_a_minimal_config(tmp_path: Path, tls_files: TlsFiles) -> None:
    config = small_stack(
        edge={"rateLimitPerSecond": 1, "rateLimitBurst": 0, "maxBodyMb": 1, "hstsMaxAgeSeconds": 0}
    )
    text = _check(tmp_path, config, _topology(tmp_path, tls_files, 1, 1))
    assert "burst=" not in text
    assert "limit_req zone=llm_edge_clients;" in text


def test_largest_limits(tmp_path: Path, tls_files: TlsFiles) -> None:
    config = small_stack(
        edge={"rateLimitPerSecond": 100000, "rateLimitBurst": 100000, "maxBodyMb": 1024},
        balancer={"readTimeoutSeconds": 86400, "keepaliveConnections": 1024},
    )
    _check(tmp_path, config, _topology(tmp_path, tls_files, 2, 2))


def test_nginx_rejects_a_broken_config(tmp_path: Path, tls_files: TlsFiles) -> None:
    """The check above can fail: a config that lost a brace does not pass."""
    text = render_nginx_conf(small_stack(), _topology(tmp_path, tls_files, 1, 1))
    conf = tmp_path / "broken.conf"
    conf.write_text(text.replace("least_conn;", "least_conn", 1))
    with pytest.raises(AssertionError, match="nginx -t rejected"):
        check_config(conf, tmp_path)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_container_config_passes_except_for_what_needs_nginx_1_27(
    stack: str, tmp_path: Path, tls_files: TlsFiles
) -> None:
    """The container config, with only what this host cannot provide swapped out.

    Swapped: cert/key and runtime paths (no /etc/nginx/tls here), the `nginx` user
    (absent here) and upstream names (Docker DNS is absent here). The `resolve`
    parameter needs nginx >= 1.27.3 (the pinned image is 1.27.5; Debian 12 has 1.22),
    so on an older binary it is the one token taken out, and only it.
    """
    config = stack_file(stack)
    topology = container_topology(
        config,
        [f"127.0.0.1:{18000 + i}" for i in range(config.gateway.replicas)],
        [f"127.0.0.1:{11434 + i}" for i in range(config.ollama.instances)],
    )
    here = replace(
        topology,
        cert_path=str(tls_files.cert_file),
        key_path=str(tls_files.key_file),
        runtime_dir=str(tmp_path),
        user=None,
    )
    text = render_nginx_conf(config, here)
    assert text.count(" resolve;") == config.gateway.replicas + config.ollama.instances
    assert "resolver 127.0.0.11 " in text
    if _nginx_version() < (1, 27, 3):
        text = text.replace(" resolve;", ";")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    check_config(conf, tmp_path)


def _nginx_version() -> tuple[int, ...]:
    out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, check=True)
    version = out.stderr.strip().split("/", 1)[1].split()[0]
    return tuple(int(part) for part in version.split("."))


@pytest.fixture
def unprivileged_dir() -> Iterator[tuple[Path, str | None]]:
    """A directory the unprivileged user owns, and that user (None: we already are one)."""
    if os.geteuid() != 0:
        with tempfile.TemporaryDirectory(prefix="llm-nginx-") as name:
            yield Path(name), None
        return
    user = "nobody"
    entry = pwd.getpwnam(user)
    directory = Path(tempfile.mkdtemp(prefix="llm-nginx-", dir="/tmp"))
    try:
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        yield directory, user
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_runs_as_an_unprivileged_user(unprivileged_dir: tuple[Path, str | None]) -> None:
    """Rendered for a non-root user, nginx starts and serves with no system directory."""
    directory, user = unprivileged_dir
    uid = pwd.getpwnam(user).pw_uid if user else os.geteuid()
    gid = pwd.getpwnam(user).pw_gid if user else os.getegid()
    tls = make_tls_files(directory / "tls")
    for path in (directory / "tls", *(directory / "tls").iterdir()):
        os.chown(path, uid, gid)
    topology = replace(_topology(directory, tls, 1, 1), user=None)
    conf = directory / "nginx.conf"
    conf.write_text(render_nginx_conf(small_stack(), topology))
    os.chown(conf, uid, gid)
    check_config(conf, directory, user=user)
    status_port = int(topology.status_listen.rsplit(":", 1)[1])
    proc = subprocess.Popen(
        [
            nginx_binary(),
            "-p",
            str(directory),
            "-c",
            str(conf),
            "-e",
            "stderr",
            "-g",
            "daemon off;",
        ],
        user=user,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(status_port)
        reply = httpx.get(f"http://127.0.0.1:{status_port}/stub_status", timeout=5)
        assert reply.status_code == 200
        assert "Active connections:" in reply.text
        pid_owner = (directory / "nginx.pid").stat().st_uid
        assert pid_owner == uid
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert b"[emerg]" not in stderr, stderr.decode()
