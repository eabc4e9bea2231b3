"""The local stack of a test module, and clients that reach it the way users do."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.e2e.stack_process import LocalStackProcess
from tests.e2e.traffic import RunningStack

# Each test talks to the edge from its own loopback address: the edge limits requests
# per client address, so one test's traffic never eats another's budget.
_SOURCE_ADDRESSES = (f"127.0.0.{n}" for n in itertools.count(10))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """`llm-stack local up` with tests/e2e/Pulumi.e2e.yaml, once per module."""
    process = LocalStackProcess(tmp_path_factory.mktemp("e2e") / "stack").start()
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
