"""Plans of the local stack for unit tests: fixed ports and secrets, real binaries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from llm_stack.local.binaries import Binaries, find_binaries
from llm_stack.local.layout import Layout
from llm_stack.local.ollama import RealOllama
from llm_stack.local.plan import LocalPlan, LocalSecrets, make_plan
from llm_stack.local.ports import PortAssignment
from llm_stack.local.source import StackSource, load_source

REPO = Path(__file__).resolve().parents[3]
E2E_STACK_FILE = REPO / "tests" / "e2e" / "Pulumi.e2e.yaml"
SECRETS = LocalSecrets(
    redis_password="pw-for-tests-0123456789",
    dev_key="llmsk-unit-test-key",
    admin_key="llmsk-unit-test-admin-key",
)

PlanFactory = Callable[..., LocalPlan]


def fixed_ports(replicas: int, emulators: int) -> PortAssignment:
    return PortAssignment(
        https=20443,
        http=20080,
        redis=20379,
        redis_cache=20380,
        balancer=20800,
        status=20801,
        gateways=tuple(21000 + i for i in range(replicas)),
        emulators=tuple(22000 + i for i in range(emulators)),
        nginx_exporter=20913,
        prometheus=20909,
    )


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    return find_binaries()


@pytest.fixture
def make(tmp_path: Path, binaries: Binaries) -> PlanFactory:
    """`make(stack_file, real=None)`: the plan of that stack file in a temp work dir."""

    def build(stack_file: Path = E2E_STACK_FILE, real: RealOllama | None = None) -> LocalPlan:
        source: StackSource = load_source(stack_file)
        emulators = 0 if real is not None else source.config.ollama.instances
        ports = fixed_ports(source.config.gateway.replicas, emulators)
        return make_plan(source, Layout(tmp_path / "work"), ports, binaries, SECRETS, real)

    return build
