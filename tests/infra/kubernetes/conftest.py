"""One mocked run of the real program per Kubernetes stack, shared by this directory."""

from __future__ import annotations

import pytest
from llm_config import StackConfig, parse_stack_config

from tests.infra.kubernetes.stacks import alt_values, k8s_values, route_values, run_k8s
from tests.infra.stack_run import StackRun


@pytest.fixture(scope="session")
def k8s_run() -> StackRun:
    return run_k8s(k8s_values())


@pytest.fixture(scope="session")
def alt_run() -> StackRun:
    return run_k8s(alt_values())


@pytest.fixture(scope="session")
def route_run() -> StackRun:
    return run_k8s(route_values())


def config_of(values: dict[str, object]) -> StackConfig:
    return parse_stack_config(values, "k8s")


@pytest.fixture(params=["k8s", "alt", "route"])
def each_k8s(
    request: pytest.FixtureRequest, k8s_run: StackRun, alt_run: StackRun, route_run: StackRun
) -> tuple[StackRun, StackConfig]:
    values = {"k8s": k8s_values, "alt": alt_values, "route": route_values}[request.param]()
    run = {"k8s": k8s_run, "alt": alt_run, "route": route_run}[request.param]
    return run, config_of(values)
