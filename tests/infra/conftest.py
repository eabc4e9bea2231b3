"""One mocked run of the real program per stack file, shared by the tests of this dir."""

from __future__ import annotations

import pytest
from llm_config import StackConfig, load_stack_file

from tests.infra.stack_run import REPO, StackRun, prod_secrets, run_stack, stack_values


@pytest.fixture(scope="session")
def dev_run() -> StackRun:
    return run_stack("dev", stack_values("dev"))


@pytest.fixture(scope="session")
def prod_run() -> StackRun:
    return run_stack("prod", stack_values("prod", prod_secrets()))


@pytest.fixture(scope="session")
def dev_config() -> StackConfig:
    return load_stack_file(REPO / "Pulumi.dev.yaml")


@pytest.fixture(scope="session")
def prod_config() -> StackConfig:
    return load_stack_file(REPO / "Pulumi.prod.yaml")


@pytest.fixture(params=["dev", "prod"])
def each_stack(
    request: pytest.FixtureRequest,
    dev_run: StackRun,
    prod_run: StackRun,
    dev_config: StackConfig,
    prod_config: StackConfig,
) -> tuple[StackRun, StackConfig]:
    return (dev_run, dev_config) if request.param == "dev" else (prod_run, prod_config)
