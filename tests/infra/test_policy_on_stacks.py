"""The policy pack over the real program's resources: both stacks pass, breakage fails.

The resources are what the mocked run declared, with secret markers removed: that is
what a policy pack receives (pulumi-policy decrypts secrets before validation). They
go through the pulumi-policy objects of `llm_stack.policy.policies()`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import pytest
from llm_stack.policy import policies
from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from tests.infra.stack_run import Declared, StackRun, labels, unwrap

View = tuple[str, str, dict[str, Any]]  # type, name, props


def views(run: StackRun) -> list[View]:
    return [(r.type, r.name, unwrap(dict(r.inputs))) for r in run.resources]


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def violations(resources: list[View], served: Iterable[Policy] | None = None) -> list[str]:
    """Every violation the pack reports, as `policy: message` (the Docker policies
    unless `served` says which)."""
    found: list[str] = []
    for policy in policies() if served is None else served:
        if isinstance(policy, ResourceValidationPolicy):
            for typ, name, props in resources:
                args = ResourceValidationArgs(typ, props, f"urn:{name}", name, _options(), None)
                policy.validate(
                    args, lambda msg, urn=None, p=policy.name: found.append(f"{p}: {msg}")
                )
        elif isinstance(policy, StackValidationPolicy):
            stack = [
                PolicyResource(typ, props, f"urn:{name}", name, _options(), None, None, [], {})
                for typ, name, props in resources
            ]
            policy.validate(
                StackValidationArgs(stack),
                lambda msg, urn=None, p=policy.name: found.append(f"{p}: {msg}"),
            )
    return found


def _container(resources: list[View], role: str) -> dict[str, Any]:
    for typ, _, props in resources:
        if typ == "docker:index/container:Container" and any(
            item["label"] == "llm-stack.role" and item["value"] == role for item in props["labels"]
        ):
            return props
    raise AssertionError(f"no {role} container")


def test_dev_stack_passes_the_pack(dev_run: StackRun) -> None:
    assert violations(views(dev_run)) == []


def test_prod_stack_passes_the_pack(prod_run: StackRun) -> None:
    assert violations(views(prod_run)) == []


def test_latest_image_forced_through_fails(prod_run: StackRun) -> None:
    resources = copy.deepcopy(views(prod_run))
    for typ, _, props in resources:
        if typ == "docker:index/remoteImage:RemoteImage" and props["name"].startswith("ollama/"):
            props["name"] = "ollama/ollama:latest"
    found = violations(resources)
    assert found == [
        "pinned-images: 'ollama/ollama:latest' uses 'latest': "
        "pin an exact version (repo:1.2.3) or a digest"
    ]


def test_published_ollama_port_fails(dev_run: StackRun) -> None:
    resources = copy.deepcopy(views(dev_run))
    _container(resources, "ollama")["ports"] = [
        {"internal": 11434.0, "external": 11434.0, "ip": "127.0.0.1"}
    ]
    found = violations(resources)
    assert len(found) == 1
    assert found[0].startswith("published-ports: container llm-dev-ollama-0")


def test_redis_on_the_edge_network_fails(prod_run: StackRun) -> None:
    resources = copy.deepcopy(views(prod_run))
    _container(resources, "redis")["networksAdvanced"].append({"name": "llm-prod-edge"})
    found = violations(resources)
    assert found == [
        "network-membership: container llm-prod-redis (redis): joins the edge network "
        "'llm-prod-edge'; allowed: ['internal']"
    ]


def test_ollama_with_egress_fails(prod_run: StackRun) -> None:
    resources = copy.deepcopy(views(prod_run))
    _container(resources, "ollama")["networksAdvanced"].append({"name": "llm-prod-egress"})
    assert any("joins the egress network" in v for v in violations(resources))


def test_missing_healthcheck_and_weak_password_fail(dev_run: StackRun) -> None:
    resources = copy.deepcopy(views(dev_run))
    del _container(resources, "gateway")["healthcheck"]
    grafana = _container(resources, "grafana")
    # The stack passes the password by file; someone "simplifying" it to a literal:
    grafana["envs"] = [*grafana["envs"], "GF_SECURITY_ADMIN_PASSWORD=admin"]
    found = violations(resources)
    assert any(v.startswith("healthcheck-and-restart: container llm-dev-gateway-0") for v in found)
    assert any(v.startswith("no-plain-text-secrets: container llm-dev-grafana") for v in found)
    assert len(found) == 2


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_container_carries_a_role(stack: str, dev_run: StackRun, prod_run: StackRun) -> None:
    run = dev_run if stack == "dev" else prod_run
    containers: list[Declared] = run.containers
    assert all("llm-stack.role" in labels(c) for c in containers)
