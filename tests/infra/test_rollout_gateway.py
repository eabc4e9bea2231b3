"""The Docker rollout's hooks against a real gateway: drain, wait, re-admit, 404s.

No Docker engine here, so `docker inspect` says the gateway container runs, and
`docker exec -e NAME <gateway> llm-gateway drain ...` runs the same CLI on this host,
with only the variable it names passed on (as `docker exec -e NAME` does) and the
container's loopback URL pointed at the test gateway. Everything after that is real:
the drain CLI, the gateway's admin API, its drains and its instances.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from llm_stack.docker.rollout import ADMIN_KEY_ENV, GatewayAdmin

from tests.gateway.test_admin_drain import instances, model_aware
from tests.gateway.test_quotas import Keys, start
from tests.support.emulator import Emulator, EmulatorFactory
from tests.support.gateway import GatewayFactory, GatewayProcess
from tests.support.redis_server import RedisServer

CONTAINER_URL = "http://127.0.0.1:8000"


class DockerOnThisHost:
    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.calls: list[list[str]] = []

    def __call__(
        self, argv: Sequence[str], env: Mapping[str, str]
    ) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        if argv[:2] == ["docker", "inspect"]:
            return subprocess.CompletedProcess(argv, 0, "true\n", "")
        assert argv[:3] == ["docker", "exec", "-e"], argv
        name, command = argv[3], argv[5:]
        assert command[0] == "llm-gateway"
        command = [self.gateway.url if a == CONTAINER_URL else a for a in command[1:]]
        return subprocess.run(
            [sys.executable, "-m", "llm_gateway", *command],
            env={"PATH": "/usr/bin:/bin", name: env[name]},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip


@pytest.fixture
def setup(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    emulator_factory: EmulatorFactory,
    redis_server: RedisServer,
) -> tuple[Keys, GatewayProcess, Emulator]:
    keys = Keys(tmp_path, alpha="", ops="    admin: true\n")
    second = emulator_factory()
    gateway = start(gateway_factory, emulator, redis_server, keys, **model_aware(emulator, second))
    return keys, gateway, second


def test_the_hooks_drain_and_readmit_an_instance_through_a_gateway(
    setup: tuple[Keys, GatewayProcess, Emulator],
) -> None:
    keys, gateway, second = setup
    docker = DockerOnThisHost(gateway)
    admin = GatewayAdmin(
        gateways=["llm-gateway-0"],
        gateway_port=8000,
        # The second emulator is named by its host:port, as Docker's instances are.
        ollama_port=second.port,
        drain_timeout_seconds=60,
        runner=docker,
        environ={ADMIN_KEY_ENV: keys.plain["ops"]},
    )
    name = admin.instance_name("127.0.0.1")
    assert instances(gateway, keys)[name]["state"] == "healthy"

    note = admin.drain("127.0.0.1")
    assert note.startswith("127.0.0.1: drained through llm-gateway-0")
    assert instances(gateway, keys)[name]["state"] == "drained"

    note = admin.readmit("127.0.0.1")
    assert note.startswith("127.0.0.1: re-admitted through llm-gateway-0")
    assert instances(gateway, keys)[name]["state"] == "healthy"

    # An instance the gateway does not know (added, its gateways not rolled yet).
    assert "nothing to drain" in admin.drain("10.0.0.9")
    assert "take it up when they roll" in admin.readmit("10.0.0.9")
    # The key went by name only.
    assert all(keys.plain["ops"] not in arg for call in docker.calls for arg in call)
