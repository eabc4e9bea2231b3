"""Checks of a live stack, read from its outputs (see tests/live/README.md).

`--outputs FILE` (or $LLM_STACK_OUTPUTS) names the stack outputs to check. Without
either, the suite starts `llm-stack local up` itself for the session and checks that,
so CI and `make test` always run it for real. Docker-only checks
(test_docker_host.py) are collected only when the outputs are a Docker host's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack_process import LocalStackProcess
from tests.live.hostview import LiveStack
from tests.live.outputs import (
    PUBLISHING_ROLES,
    containers,
    is_docker_host,
    load_outputs,
    outputs_path,
)

LIVE_STACK_FILE = Path(__file__).resolve().parent / "Pulumi.live.yaml"
DOCKER_ONLY = "test_docker_host.py"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("llm-stack live checks").addoption(
        "--outputs",
        dest="llm_stack_outputs",
        metavar="FILE",
        help="stack outputs JSON to check (`pulumi stack output --json --show-secrets`, "
        "or a local stack's outputs.json); default $LLM_STACK_OUTPUTS, else a local stack "
        "is started for the session",
    )


def _given_outputs(config: pytest.Config) -> dict[str, Any] | None:
    path = outputs_path(config)
    return load_outputs(path) if path is not None else None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name != DOCKER_ONLY:
        return None
    outputs = _given_outputs(config)
    # Not skipped: never generated, unless the outputs are a Docker host's.
    return True if outputs is None or not is_docker_host(outputs) else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Docker checks get one test per container of the outputs (collected only then)."""
    wanted = {"container", "internal_container", "ollama_container", "edge_container"}
    if not wanted & set(metafunc.fixturenames):
        return
    outputs = _given_outputs(metafunc.config)
    assert outputs is not None
    assert is_docker_host(outputs)
    internal = [c for c in containers(outputs) if c.role not in PUBLISHING_ROLES]
    params = {
        "container": containers(outputs),
        "internal_container": internal,
        "ollama_container": containers(outputs, "ollama"),
        "edge_container": containers(outputs, "nginx"),
    }
    for name, values in params.items():
        if name in metafunc.fixturenames:
            if not values:
                # An empty parameter set would show as a skip; every deploy has these.
                raise pytest.UsageError(f"the outputs name no container for {name}")
            metafunc.parametrize(name, values, ids=[str(v) for v in values])


@pytest.fixture(scope="session")
def live_outputs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    given = _given_outputs(request.config)
    if given is not None:
        yield given
        return
    hosts = request.config.getoption("hosts", default=None)
    if hosts and any(not h.startswith("local://") for h in hosts.split(",")):
        raise pytest.UsageError(
            f"--hosts={hosts} names another machine: give that stack's outputs with "
            "--outputs FILE (a local stack started here would not be on it)"
        )
    process = LocalStackProcess(
        tmp_path_factory.mktemp("live") / "stack",
        LIVE_STACK_FILE,
        args=("--free-ports", "--emulate"),
    ).start()
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def stack(live_outputs: dict[str, Any], host: Any) -> LiveStack:
    return LiveStack(live_outputs, host)
