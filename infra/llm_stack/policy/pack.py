"""The rules of `rules.py` as pulumi-policy objects.

Building the policies is free of side effects; constructing the `PolicyPack` starts
the analyzer server and blocks, so only `infra/policy/__main__.py` does that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from llm_stack.policy.common import ResourceView
from llm_stack.policy.docker_rules import RESOURCE_RULES, network_membership
from llm_stack.policy.kubernetes_rules import KUBERNETES_RULES, default_deny

PACK_NAME = "llm-stack-security"

_DESCRIPTIONS = {
    "pinned-images": "Every image is pinned to an exact tag or digest; never 'latest' or untagged.",
    "published-ports": (
        "Only nginx (edge ports) and Grafana publish host ports, bound to an address "
        "unless the stack config declares a wildcard."
    ),
    "healthcheck-and-restart": "Every container has a healthcheck and a restart policy.",
    "no-plain-text-secrets": "Secret-named environment variables hold no literal-looking values.",
    "kubernetes-pinned-images": "Every container of a Kubernetes workload runs a pinned image.",
    "kubernetes-probes": "Every long-running container has a readiness and a liveness probe.",
    "kubernetes-resources": "Every container sets CPU and memory requests and limits.",
    "kubernetes-pod-security": (
        "No privileged pods: non-root, no privilege escalation, all capabilities dropped, "
        "read-only root filesystem, no host namespaces or host paths."
    ),
    "kubernetes-distinct-gpus": (
        "A GPU container asks for exactly one device; none sees every GPU of its node."
    ),
    "kubernetes-secrets": (
        "Secret-named variables come from Secrets; ConfigMaps hold no keys or passwords."
    ),
    "kubernetes-route-timeouts": (
        "Every HTTPRoute rule sets its request timeout (implementations' defaults cut "
        "long generations: Envoy Gateway's is 15 s)."
    ),
    "kubernetes-prestop-grace": (
        "A container's preStop sleep ends before its pod's grace period does."
    ),
}


def _resource_validator(
    rule: Callable[[str, Mapping[str, Any]], list[str]],
) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule(args.resource_type, args.props):
            report_violation(message, args.urn)

    return validate


def _stack_validator(
    rule: Callable[[list[ResourceView]], list[str]],
) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        views = [ResourceView(r.resource_type, r.name, r.props) for r in args.resources]
        for message in rule(views):
            report_violation(message, None)

    return validate


def _resource_policies(
    rules: dict[str, Callable[[str, Mapping[str, Any]], list[str]]], level: EnforcementLevel
) -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [
        ResourceValidationPolicy(
            name=name,
            description=_DESCRIPTIONS[name],
            validate=_resource_validator(rule),
            enforcement_level=level,
        )
        for name, rule in rules.items()
    ]


def policies(
    level: EnforcementLevel = EnforcementLevel.MANDATORY,
) -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """The Docker platform's policies, at `level`."""
    built = _resource_policies(RESOURCE_RULES, level)
    built.append(
        StackValidationPolicy(
            name="network-membership",
            description=(
                "Ollama, Redis, the gateway, Prometheus and the exporters join only the "
                "internal network; only the model puller joins the egress network."
            ),
            validate=_stack_validator(network_membership),
            enforcement_level=level,
        )
    )
    return built


def kubernetes_policies(
    level: EnforcementLevel = EnforcementLevel.MANDATORY,
) -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """The Kubernetes platform's policies, at `level`."""
    built = _resource_policies(KUBERNETES_RULES, level)
    built.append(
        StackValidationPolicy(
            name="kubernetes-default-deny",
            description=(
                "Every namespace running a workload of the stack has a default-deny "
                "NetworkPolicy; what may talk is allowed from there."
            ),
            validate=_stack_validator(default_deny),
            enforcement_level=level,
        )
    )
    return built


def all_policies(
    level: EnforcementLevel = EnforcementLevel.MANDATORY,
) -> list[Policy]:
    """What the pack serves: both platforms' policies (each rule ignores the other's
    resource types, so one pack checks either kind of stack)."""
    return [*policies(level), *kubernetes_policies(level)]
