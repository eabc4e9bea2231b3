"""The local stack of a test module, and clients that reach it the way users do."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.stack_process import E2E_STACK_FILE, LocalStackProcess
from tests.e2e.traffic import RunningStack

# Each test talks to the edge from its own loopback address: the edge limits requests
# per client address, so one test's traffic never eats another's budget.
_SOURCE_ADDRESSES = (f"127.0.0.{n}" for n in itertools.count(10))


def stack_file_for(routing: str, directory: Path) -> Path:
    """tests/e2e/Pulumi.e2e.yaml with `gateway.routing` set (one file, two modes)."""
    values = yaml.safe_load(E2E_STACK_FILE.read_text(encoding="utf-8"))
    values["config"]["llm-stack:gateway"]["routing"] = routing
    path = directory / f"Pulumi.e2e-{routing}.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=["least-conn", "model-aware"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    """`llm-stack local up` with tests/e2e/Pulumi.e2e.yaml, once per module and routing
    mode: the gateways behind the nginx least_conn balancer, or routing themselves."""
    workdir = tmp_path_factory.mktemp(f"e2e-{request.param}")
    stack_file = stack_file_for(request.param, workdir)
    process = LocalStackProcess(workdir / "stack", stack_file).start()
    try:
        outputs = process.wait_ready()
        yield RunningStack(process, outputs)
    finally:
        process.stop()


@pytest.fixture
def source_address() -> str:
    address = next(_SOURCE_ADDRESSES)
    if address.endswith(".255"):
        raise RuntimeError("out of loopback source addresses")
    return address
