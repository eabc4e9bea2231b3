"""Which live checks exist for which outputs (tests/live), checked by collecting them.

A Docker host's outputs (here: what the real Pulumi program exports under mocks, as
`pulumi stack output --json --show-secrets` would print them) get one Docker check per
container; a local stack's outputs get none, and nothing shows up as skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.infra.local.conftest import REPO
from tests.infra.stack_run import StackRun, unwrap

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process

# Plugins the collection does not need (they only cost start-up time).
UNUSED_PLUGINS = ("cacheprovider", "schemathesis", "hypothesispytest", "anyio")


def _collect_only(*args: str) -> subprocess.CompletedProcess[str]:
    plugins = [arg for name in UNUSED_PLUGINS for arg in ("-p", f"no:{name}")]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *plugins, "tests/live", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "LLM_STACK_OUTPUTS": ""},
    )  # fmt: skip


def _collect(outputs: dict[str, Any], tmp_path: Path) -> list[str]:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    result = _collect_only("--outputs", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipped" not in result.stdout
    assert "deselected" not in result.stdout
    return [line for line in result.stdout.splitlines() if "::" in line]


def _per_test(ids: list[str]) -> Counter[str]:
    return Counter(i.split("::")[1].split("[")[0] for i in ids)


def _docker_outputs(run: StackRun) -> dict[str, Any]:
    outputs: dict[str, Any] = unwrap(run.outputs)
    return outputs


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_docker_outputs_get_one_check_per_container(
    stack: str, dev_run: StackRun, prod_run: StackRun, tmp_path: Path
) -> None:
    outputs = _docker_outputs(dev_run if stack == "dev" else prod_run)
    names = [name for names in outputs["containers"].values() for name in names]
    internal = [
        name
        for role, role_names in outputs["containers"].items()
        if role not in ("nginx", "grafana")
        for name in role_names
    ]
    ids = _collect(outputs, tmp_path)
    counts = _per_test(ids)
    assert counts["test_container_is_running_and_healthy"] == len(names)
    assert counts["test_container_restart_policy"] == len(names)
    assert counts["test_internal_container_publishes_no_port"] == len(internal)
    assert counts["test_edge_publishes_exactly_the_edge_ports"] == 1
    assert counts["test_ollama_container_gpu_request"] == len(outputs["containers"]["ollama"])
    assert counts["test_ollama_instances_each_have_their_own_gpu"] == 1
    # The checks every live stack gets are there too.
    assert counts["test_an_identical_request_through_the_edge_is_a_cache_hit"] == 1
    for name in names:
        assert any(f":{name}-" in i for i in ids), name
    assert ("gpu-exporter" in outputs["containers"]) == (stack == "prod")


def test_local_outputs_get_no_docker_checks(tmp_path: Path) -> None:
    outputs = {"gatewayUrl": "https://localhost:1", "local": {"kind": "local"}}
    counts = _per_test(_collect(outputs, tmp_path))
    assert "test_container_is_running_and_healthy" not in counts
    assert counts["test_the_edge_listens_where_the_outputs_say"] == 1
    assert sum(counts.values()) == 5


def test_no_outputs_means_the_local_stack_and_no_docker_checks() -> None:
    result = _collect_only()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_docker_host" not in result.stdout
    assert "5 tests collected" in result.stdout


def test_a_missing_outputs_file_is_a_usage_error(tmp_path: Path) -> None:
    result = _collect_only("--outputs", str(tmp_path / "nope.json"))
    assert result.returncode != 0
    assert "does not exist" in result.stdout + result.stderr
