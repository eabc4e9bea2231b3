"""The outputs file, the Redis readiness check and the command line."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from llm_stack.cli import main
from llm_stack.local.outputs import build_outputs, remove_outputs, write_outputs
from llm_stack.local.readiness import redis_pong

from tests.infra.local.conftest import SECRETS, PlanFactory
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess

# Names the Pulumi program exports (llm_stack.docker.stack) that mean the same here.
PULUMI_OUTPUT_NAMES = {
    "environment", "namePrefix", "gatewayUrl", "grafanaUrl", "edgePorts", "models", "devApiKey",
}  # fmt: skip


def test_outputs_use_the_pulumi_names_plus_a_local_section(make: PlanFactory) -> None:
    plan = make()
    pids = [(spec, 1000 + i) for i, spec in enumerate(plan.services)]
    outputs = build_outputs(plan, SECRETS, pids, stack_pid=999)
    assert set(outputs) == PULUMI_OUTPUT_NAMES | {"local", "devAdminApiKey"}
    assert outputs["devAdminApiKey"] == SECRETS.admin_key
    assert outputs["local"]["redisUrlFile"] == str(plan.layout.redis_url_file)
    assert outputs["gatewayUrl"] == "https://localhost:20443"
    assert outputs["grafanaUrl"] is None
    assert outputs["devApiKey"] == SECRETS.dev_key
    assert outputs["models"] == ["llama3.2:1b", "nomic-embed-text"]
    assert [(p["name"], p["address"], p["port"]) for p in outputs["edgePorts"]] == [
        ("https", "127.0.0.1", 20443), ("http", "127.0.0.1", 20080),
    ]  # fmt: skip
    local = outputs["local"]
    assert local["kind"] == "local"
    assert local["pid"] == 999
    assert local["caCert"] == str(plan.layout.cert)
    assert local["prometheusUrl"] == "http://127.0.0.1:20909"
    assert local["ollama"]["real"] is False
    assert local["ollama"]["emulators"] == ["http://127.0.0.1:22000", "http://127.0.0.1:22001"]
    assert [(s["name"], s["pid"]) for s in local["services"]] == [
        (spec.name, pid) for spec, pid in pids
    ]
    nginx = next(s for s in local["services"] if s["name"] == "nginx")
    assert nginx["ports"] == {"https": 20443, "http": 20080, "balancer": 20800, "status": 20801}
    # The Redis password never reaches the outputs (only the dev key does, on purpose).
    assert SECRETS.redis_password not in json.dumps(outputs)


def test_outputs_are_written_atomically_and_privately(tmp_path: Path) -> None:
    path = tmp_path / "out" / "outputs.json"
    write_outputs(path, {"a": 1})
    write_outputs(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["outputs.json"]  # no temp file left
    remove_outputs(path)
    remove_outputs(path)
    assert not path.exists()


@pytest.mark.process
def test_redis_readiness_needs_the_right_password(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    assert binary is not None
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", "s3cret"]  # fmt: skip
    server = ManagedProcess(argv, port, tmp_path / "redis.log").start()
    try:
        wait_for_port(port)
        assert redis_pong(port, "s3cret")
        assert not redis_pong(port, "wrong")
    finally:
        server.stop()
    assert not redis_pong(port, "s3cret")


def test_help_describes_local_up(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["local", "up", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--stack", "--config", "--free-ports", "--workdir", "--ollama-url", "--outputs"):
        assert flag in text


@pytest.mark.process
def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "llm-stack"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert "local" in result.stdout


def test_stack_and_config_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["local", "up", "--stack", "dev", "--config", "x"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
