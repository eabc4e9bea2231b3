"""Bad input and faults at start-up: `llm-stack local up` says what is wrong and how to fix
it, exits non-zero, and leaves nothing running (no process of the run survives)."""

from __future__ import annotations

import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack_process import E2E_STACK_FILE, LocalStackProcess
from tests.support.ports import free_port


def _stack_file(directory: Path, name: str, text: str) -> Path:
    path = directory / f"Pulumi.{name}.yaml"
    path.write_text(text)
    return path


def _run(
    workdir: Path, stack_file: Path | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    process = LocalStackProcess(workdir, stack_file, args=args, env=env)
    result = process.run()
    assert process.leftovers() == [], "a failed start left processes behind"
    assert not (workdir / "outputs.json").exists()
    return result


def test_a_missing_stack_file_is_named(tmp_path: Path) -> None:
    result = _run(tmp_path / "w", tmp_path / "Pulumi.nothere.yaml", "--free-ports")
    assert result.returncode == 2
    assert "Pulumi.nothere.yaml: no such stack file" in result.stderr


def test_an_unknown_stack_name_says_where_it_looked(tmp_path: Path) -> None:
    result = _run(tmp_path / "w", None, "--stack", "nosuch", "--free-ports")
    assert result.returncode == 2
    assert "no stack file Pulumi.nosuch.yaml" in result.stderr
    assert "--config PATH" in result.stderr


def test_an_invalid_config_gets_the_deploys_own_message(tmp_path: Path) -> None:
    path = _stack_file(
        tmp_path,
        "bad",
        "config:\n  llm-stack:ollama:\n    instances: 0\n    models: [llama3.2:1b]\n"
        "  llm-stack:edge:\n    hostname: localhost\n    tls: self-signed\n    typo: 1\n",
    )
    result = _run(tmp_path / "w", path, "--free-ports")
    assert result.returncode == 2
    assert "llm-stack:ollama.instances: Input should be greater than or equal to 1" in result.stderr
    assert "llm-stack:edge.typo" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_workdir_holding_other_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    workdir = tmp_path / "somebody-elses"
    workdir.mkdir(mode=0o755)
    (workdir / "notes.txt").write_text("mine")
    result = _run(workdir, E2E_STACK_FILE, "--free-ports", "--emulate")
    assert result.returncode == 2
    assert "is not empty and was not made by `llm-stack local up`" in result.stderr
    assert [p.name for p in workdir.iterdir()] == ["notes.txt"]
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o755


def test_invalid_yaml_is_reported_as_such(tmp_path: Path) -> None:
    path = _stack_file(tmp_path, "yaml", "config: [unclosed\n")
    result = _run(tmp_path / "w", path, "--free-ports")
    assert result.returncode == 2
    assert "not valid YAML" in result.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on for the duration of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_configured_port_already_taken_names_the_key_and_the_fix(
    tmp_path: Path, taken_port: int
) -> None:
    path = _stack_file(
        tmp_path,
        "taken",
        "config:\n  llm-stack:ollama:\n    models: [llama3.2:1b]\n"
        f"  llm-stack:edge:\n    httpsPort: {taken_port}\n    httpPort: {free_port()}\n",
    )
    result = _run(tmp_path / "w", path, "--emulate")
    assert result.returncode == 2
    assert f"port {taken_port} on 127.0.0.1 (llm-stack:edge.httpsPort in {path})" in result.stderr
    assert "--free-ports" in result.stderr
    # The same file with --free-ports runs (the conflict was the only problem).
    process = LocalStackProcess(tmp_path / "free", path, args=("--emulate", "--free-ports"))
    try:
        outputs = process.start().wait_ready()
        assert outputs["edgePorts"][0]["port"] != taken_port
    finally:
        assert process.stop() == 0
    assert process.leftovers() == []


def _bin_dir(directory: Path, without: str) -> Path:
    """A PATH directory with the stack's binaries except `without` (nginx comes from sbin)."""
    directory.mkdir()
    for name in ("redis-server", "prometheus", "prometheus-nginx-exporter", "openssl"):
        if name != without:
            found = shutil.which(name)
            assert found is not None, name
            (directory / name).symlink_to(found)
    return directory


def test_a_missing_binary_names_its_debian_package(tmp_path: Path) -> None:
    bin_dir = _bin_dir(tmp_path / "bin", without="prometheus")
    result = _run(tmp_path / "w", E2E_STACK_FILE, "--free-ports", env={"PATH": str(bin_dir)})
    assert result.returncode == 2
    assert "prometheus (Debian package prometheus)" in result.stderr
    assert "sudo apt-get install prometheus" in result.stderr


def test_a_service_failing_mid_start_stops_everything_already_started(tmp_path: Path) -> None:
    # Prometheus starts last: redis, two emulators, nginx, two gateways and the exporter
    # are running when it fails.
    bin_dir = _bin_dir(tmp_path / "bin", without="prometheus")
    broken = bin_dir / "prometheus"
    broken.write_text("#!/bin/sh\necho 'prometheus: broken on purpose' >&2\nexit 3\n")
    broken.chmod(0o755)
    result = _run(
        tmp_path / "w", E2E_STACK_FILE, "--free-ports", "--emulate", env={"PATH": str(bin_dir)}
    )
    assert result.returncode == 1, result.stdout + result.stderr
    for started in ("redis", "ollama-1", "nginx", "gateway-1", "nginx-exporter"):
        assert f"  {started} " in result.stdout
    assert "prometheus      FAILED: exited with code 3" in result.stdout
    assert "prometheus: broken on purpose" in result.stdout
    assert "stopping everything that started" in result.stdout


def test_ctrl_c_during_start_up_stops_what_started_and_exits_0(tmp_path: Path) -> None:
    process = LocalStackProcess(tmp_path / "w").start()
    try:
        deadline = time.monotonic() + 60
        while "  redis " not in process.console() and time.monotonic() < deadline:
            time.sleep(0.02)
        process.signal(signal.SIGINT)  # what Ctrl-C sends
        assert process.wait(timeout=60) == 0, process.console()
    finally:
        process.stop()
    assert process.leftovers() == []
    assert not process.outputs_path.exists()
