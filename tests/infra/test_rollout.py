"""Rolling changes on Docker: the graph orders replacements, the hooks drain and re-admit.

Pulumi cannot run a replacement under mocks, so the graph tests assert what decides its
order (docker/rollout.py explains the engine's rules): every Ollama instance and every
gateway replica is delete-before-replace and waits for the one before it, none takes
an input from another (a delete-before-replace cascades along inputs only), the Ollama
instances are bound to the drain and re-admit hooks, and the provider waits for health.
The hooks themselves run here against a scripted docker CLI.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Mapping, Sequence

import pulumi
import pytest
from llm_config import StackConfig
from llm_gateway.settings import named_instance
from llm_stack.docker.rollout import (
    ADMIN_KEY_ENV,
    DRAIN_HOOK,
    READMIT_HOOK,
    SKIP_ENV,
    GatewayAdmin,
    RolloutError,
    drain_hook,
    readmit_hook,
)
from llm_stack.shared.names import StackNames

from tests.infra.stack_run import Declared, StackRun, run_stack, stack_values

ADMIN_KEY = "llmsk-admin-key-for-tests"


def _chain(containers: list[Declared]) -> None:
    """Each waits for the one before it, takes no input from another, goes before its
    replacement starts: one down at a time, whatever changes."""
    assert len(containers) >= 2, "a chain needs two or more"
    urns = {c.urn for c in containers}
    for before, after in itertools.pairwise(containers):
        assert before.urn in after.options.dependencies, f"{after.name} must wait for {before.name}"
    for container in containers:
        assert container.options.delete_before_replace, container.name
        assert not container.options.property_dependencies & urns, (
            f"{container.name} takes an input from a sibling: a replacement would cascade"
        )
        assert container.plain("wait") is True, f"{container.name}: created must mean healthy"
        assert container.plain("waitTimeout", 0) >= 60


def _by_index(run: StackRun, role: str) -> list[Declared]:
    found = run.by_role(role)
    return sorted(found, key=lambda c: int(c.name.rsplit("-", 1)[1]))


@pytest.fixture(scope="module")
def wide_run() -> StackRun:
    """Three Ollama instances and three gateway replicas."""
    values = stack_values("dev")
    values["ollama"] = {**values["ollama"], "instances": 3}
    values["gateway"] = {**values.get("gateway", {}), "replicas": 3}
    return run_stack("dev", values)


def test_ollama_instances_are_replaced_one_at_a_time(wide_run: StackRun) -> None:
    instances = _by_index(wide_run, "ollama")
    names = StackNames(wide_run.outputs["namePrefix"])
    assert [c.plain("name") for c in instances] == [names.ollama(i) for i in range(3)]
    _chain(instances)
    (puller,) = wide_run.by_role("model-puller")
    assert puller.urn in instances[0].options.dependencies


def test_each_ollama_instance_is_drained_first_and_readmitted_when_healthy(
    wide_run: StackRun, each_stack: tuple[StackRun, StackConfig]
) -> None:
    run, _ = each_stack
    for stack_run in (wide_run, run):
        instances = stack_run.by_role("ollama")
        assert instances
        for instance in instances:
            assert instance.options.hooks == {
                "before_delete": (DRAIN_HOOK,),
                "after_create": (READMIT_HOOK,),
            }
            # What the re-admission waits for: the healthcheck that asks for a model.
            assert instance.plain("healthcheck")["tests"][:3] == ["CMD", "ollama", "show"]


def test_gateway_replicas_are_replaced_one_at_a_time(wide_run: StackRun) -> None:
    replicas = _by_index(wide_run, "gateway")
    names = StackNames(wide_run.outputs["namePrefix"])
    assert [c.plain("name") for c in replicas] == [names.gateway(i) for i in range(3)]
    _chain(replicas)
    # ... and only after the pool: an Ollama roll and a gateway roll never overlap.
    instance_urns = {c.urn for c in wide_run.by_role("ollama")}
    for replica in replicas:
        assert instance_urns <= set(replica.options.dependencies)
        # Its streams get the gateway's grace before Docker kills it.
        assert replica.plain("stopTimeout") >= 5


def test_the_edge_retries_on_the_next_gateway_meanwhile(wide_run: StackRun) -> None:
    (nginx,) = wide_run.by_role("nginx")
    conf = wide_run.uploads(nginx)["/etc/nginx/nginx.conf"]
    gateways = conf.split("upstream llm_gateways {", 1)[1].split("}", 1)[0]
    servers = [
        line.split()[1] for line in gateways.splitlines() if line.strip().startswith("server ")
    ]
    names = StackNames(wide_run.outputs["namePrefix"])
    assert servers == [f"{names.gateway(i)}:8000" for i in range(3)]
    # A replaced replica has a new address: re-resolved while nginx runs.
    assert all(" resolve" in line for line in gateways.splitlines() if "server " in line)
    edge = conf.split("proxy_pass http://llm_gateways;", 1)[1]
    assert "proxy_next_upstream error non_idempotent;" in edge
    assert "proxy_next_upstream_tries 3;" in edge


# -- the hooks, against a scripted docker CLI ------------------------------------------


class ScriptedDocker:
    """Answers `docker inspect` and `docker exec ... llm-gateway drain` as scripted."""

    def __init__(self, running: Sequence[str], drain_status: int = 0, known: bool = True) -> None:
        self.running = set(running)
        self.drain_status = drain_status
        self.known = known
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def __call__(
        self, argv: Sequence[str], env: Mapping[str, str]
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), dict(env)))
        if argv[:2] == ["docker", "inspect"]:
            up = argv[-1] in self.running
            return subprocess.CompletedProcess(argv, 0 if up else 1, "true\n" if up else "", "")
        if argv[:2] == ["docker", "exec"] and not self.known:
            # What `llm-gateway drain` prints when the gateway answers 404.
            err = "llm-gateway drain: 404: no Ollama instance is named 'x' (GET /admin/instances)"
            return subprocess.CompletedProcess(argv, 1, "", err)
        if argv[:2] == ["docker", "exec"]:
            status = 0 if "--undrain" in argv else self.drain_status
            err = "still 2 request(s) in flight" if status == 3 else ""
            return subprocess.CompletedProcess(argv, status, "llm-ollama-1:11434: drained", err)
        raise AssertionError(f"unexpected command {argv}")

    def execs(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls if argv[:2] == ["docker", "exec"]]


def _admin(docker: ScriptedDocker, environ: Mapping[str, str]) -> GatewayAdmin:
    return GatewayAdmin(
        gateways=["llm-gateway-0", "llm-gateway-1"],
        gateway_port=8000,
        ollama_port=11434,
        drain_timeout_seconds=900,
        runner=docker,
        environ=environ,
    )


def _args(**inputs: object) -> pulumi.ResourceHookArgs:
    return pulumi.ResourceHookArgs(
        urn="urn:pulumi:dev::llm-stack::x", id="id", name="ollama-1", type="docker", **inputs
    )  # type: ignore[arg-type]


def test_instances_are_named_as_the_gateway_names_them() -> None:
    admin = _admin(ScriptedDocker(running=[]), {})
    # What GATEWAY_OLLAMA_INSTANCES gives the gateway on Docker (gateway_env.py).
    assert admin.instance_name("llm-ollama-1") == named_instance("http://llm-ollama-1:11434")[0]


def test_the_drain_hook_drains_through_a_running_gateway_and_waits() -> None:
    docker = ScriptedDocker(running=["llm-gateway-1"])
    logged: list[str] = []
    drain_hook(_admin(docker, {ADMIN_KEY_ENV: ADMIN_KEY}), logged.append)(
        _args(old_inputs={"name": "llm-ollama-1"})
    )
    (argv,) = docker.execs()
    assert argv == [
        "docker", "exec", "-e", ADMIN_KEY_ENV, "llm-gateway-1",
        "llm-gateway", "drain", "--url", "http://127.0.0.1:8000",
        "--instance", "llm-ollama-1:11434", "--until", "ready", "--wait", "--timeout", "900",
    ]  # fmt: skip
    # The key goes by name into docker exec, never in an argument.
    assert all(ADMIN_KEY not in arg for argv, _ in docker.calls for arg in argv)
    assert all(env[ADMIN_KEY_ENV] == ADMIN_KEY for argv, env in docker.calls if "exec" in argv)
    assert logged == ["llm-ollama-1: drained through llm-gateway-1: llm-ollama-1:11434: drained"]


def test_the_readmit_hook_undrains_the_new_container() -> None:
    docker = ScriptedDocker(running=["llm-gateway-0", "llm-gateway-1"])
    readmit_hook(_admin(docker, {ADMIN_KEY_ENV: ADMIN_KEY}), lambda _: None)(
        _args(new_inputs={"name": "llm-ollama-1"})
    )
    (argv,) = docker.execs()
    assert argv[4] == "llm-gateway-0"
    assert argv[-3:] == ["--instance", "llm-ollama-1:11434", "--undrain"]


def test_a_drain_that_times_out_stops_the_replacement() -> None:
    docker = ScriptedDocker(running=["llm-gateway-0"], drain_status=3)
    with pytest.raises(RolloutError, match="still in flight after 900s"):
        _admin(docker, {ADMIN_KEY_ENV: ADMIN_KEY}).drain("llm-ollama-1")


def test_a_refused_drain_stops_the_replacement() -> None:
    docker = ScriptedDocker(running=["llm-gateway-0"], drain_status=1)
    with pytest.raises(RolloutError, match="drain through llm-gateway-0 failed"):
        _admin(docker, {ADMIN_KEY_ENV: ADMIN_KEY}).drain("llm-ollama-1")


def test_an_instance_the_gateways_do_not_know_is_neither_drained_nor_readmitted() -> None:
    """An added instance is created before the gateways roll with the longer list."""
    docker = ScriptedDocker(running=["llm-gateway-0"], known=False)
    admin = _admin(docker, {ADMIN_KEY_ENV: ADMIN_KEY})
    assert "take it up when they roll" in admin.readmit("llm-ollama-2")
    assert "nothing to drain" in admin.drain("llm-ollama-2")
    assert len(docker.execs()) == 2


def test_without_an_admin_key_nothing_is_replaced_undrained() -> None:
    docker = ScriptedDocker(running=["llm-gateway-0"])
    with pytest.raises(RolloutError, match=ADMIN_KEY_ENV):
        _admin(docker, {}).drain("llm-ollama-1")
    assert docker.execs() == []


def test_with_no_gateway_running_there_is_nothing_to_drain() -> None:
    docker = ScriptedDocker(running=[])
    admin = _admin(docker, {ADMIN_KEY_ENV: ADMIN_KEY})
    assert "no gateway runs" in admin.drain("llm-ollama-0")
    # A first deploy: the gateway does not exist yet when the instance is created.
    assert "left to the gateway" in admin.readmit("llm-ollama-0")
    assert docker.execs() == []


def test_skipping_the_drain_is_explicit() -> None:
    docker = ScriptedDocker(running=["llm-gateway-0"])
    admin = _admin(docker, {SKIP_ENV: "1"})
    assert "not drained" in admin.drain("llm-ollama-0")
    assert "not undrained" in admin.readmit("llm-ollama-0")
    assert docker.calls == []
