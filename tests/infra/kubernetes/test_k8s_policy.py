"""The policy pack over the Kubernetes stacks: they pass, and each kind of breakage
is reported by the rule that owns it (through the same pulumi-policy objects the
pack serves, on the props a pack receives: manifests without secret markers)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from llm_stack.policy import all_policies
from llm_stack.policy.kubernetes_rules import pod_spec_of
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from tests.infra.kubernetes.manifests import normalize
from tests.infra.stack_run import StackRun, unwrap
from tests.infra.test_policy_on_stacks import View
from tests.infra.test_policy_on_stacks import violations as pack_violations
from tests.infra.test_policy_pack_process import _struct
from tests.infra.test_policy_pack_process import analyzer as analyzer  # the pack's process


def violations(resources: list[View]) -> list[str]:
    """Every violation the served pack (both platforms' policies) reports."""
    return pack_violations(resources, all_policies())


def test_docker_stacks_pass_the_kubernetes_policies_too(dev_run: StackRun) -> None:
    """One pack serves both platforms: a rule ignores the other platform's types."""
    assert violations(views(dev_run)) == []


def views(run: StackRun) -> list[View]:
    return [(r.type, r.name, normalize(unwrap(dict(r.inputs)))) for r in run.resources]


def test_every_kubernetes_stack_passes_the_pack(
    k8s_run: StackRun, alt_run: StackRun, route_run: StackRun
) -> None:
    for run in (k8s_run, alt_run, route_run):
        assert violations(views(run)) == []


def _workload(resources: list[View], kind: str, suffix: str) -> dict[str, Any]:
    for typ, _, props in resources:
        if typ.endswith(f":{kind}") and props["metadata"]["name"].endswith(suffix):
            return props
    raise AssertionError(f"no {kind} *{suffix}")


def _pod(resources: list[View], kind: str, suffix: str) -> dict[str, Any]:
    typ = "kubernetes:apps/v1:" + kind
    pod = pod_spec_of(typ, _workload(resources, kind, suffix))
    assert isinstance(pod, dict)
    return pod


def _first(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["containers"][0]
    return container


def _latest(r: list[View]) -> None:
    _first(_pod(r, "Deployment", "gateway"))["image"] = "registry.example.com/gateway:latest"


def _no_probe(r: list[View]) -> None:
    del _first(_pod(r, "StatefulSet", "redis"))["livenessProbe"]


def _no_limits(r: list[View]) -> None:
    del _first(_pod(r, "Deployment", "edge"))["resources"]["limits"]


def _privileged(r: list[View]) -> None:
    _first(_pod(r, "Deployment", "gateway"))["securityContext"]["privileged"] = True


def _root(r: list[View]) -> None:
    _first(_pod(r, "StatefulSet", "redis"))["securityContext"]["runAsUser"] = 0


def _host_network(r: list[View]) -> None:
    _pod(r, "Deployment", "edge")["hostNetwork"] = True


def _two_gpus(r: list[View]) -> None:
    _first(_pod(r, "StatefulSet", "ollama"))["resources"]["limits"]["nvidia.com/gpu"] = "2"


def _all_gpus(r: list[View]) -> None:
    server = _first(_pod(r, "StatefulSet", "ollama"))
    server["env"].append({"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"})


def _literal_secret(r: list[View]) -> None:
    gateway = _first(_pod(r, "Deployment", "gateway"))
    for entry in gateway["env"]:
        if entry["name"] == "GATEWAY_REDIS_URL":
            entry.pop("valueFrom")
            entry["value"] = "redis://:hunter2hunter2hunter2@redis:6379/0"
    # The same variable renamed to look like a password, to exercise the name check.
    gateway["env"].append({"name": "REDIS_PASSWORD", "value": "x" * 32})


def _key_in_config_map(r: list[View]) -> None:
    config_map = _workload(r, "ConfigMap", "nginx-conf")
    config_map["data"]["key.pem"] = "-----BEGIN PRIVATE KEY-----\nabc\n"


def _route_without_timeouts(r: list[View]) -> None:
    for rule in _workload(r, "HTTPRoute", "edge")["spec"]["rules"]:
        del rule["timeouts"]


def _grace_shorter_than_pre_stop(r: list[View]) -> None:
    _pod(r, "Deployment", "gateway")["terminationGracePeriodSeconds"] = 10


def _no_grace_and_a_long_pre_stop(r: list[View]) -> None:
    pod = _pod(r, "Deployment", "edge")
    del pod["terminationGracePeriodSeconds"]  # the default 30 s, under a 30 s sleep
    _first(pod)["lifecycle"]["preStop"]["exec"]["command"] = ["sleep", "30"]


def _no_default_deny(r: list[View]) -> None:
    r[:] = [v for v in r if not v[2].get("metadata", {}).get("name", "").endswith("default-deny")]


BREAKAGES: list[tuple[Callable[[list[View]], None], str, int]] = [
    (_latest, "kubernetes-pinned-images", 1),
    (_no_probe, "kubernetes-probes", 1),
    (_no_limits, "kubernetes-resources", 1),
    (_privileged, "kubernetes-pod-security", 1),
    (_root, "kubernetes-pod-security", 1),
    (_host_network, "kubernetes-pod-security", 1),
    # The limit is not 1, and the request no longer matches it.
    (_two_gpus, "kubernetes-distinct-gpus", 2),
    (_all_gpus, "kubernetes-distinct-gpus", 1),
    (_literal_secret, "kubernetes-secrets", 1),
    (_key_in_config_map, "kubernetes-secrets", 1),
    (_route_without_timeouts, "kubernetes-route-timeouts", 1),
    (_grace_shorter_than_pre_stop, "kubernetes-prestop-grace", 1),
    (_no_grace_and_a_long_pre_stop, "kubernetes-prestop-grace", 1),
    # Every workload of the namespace is reported: Ollama, both Redis, gateway, edge.
    (_no_default_deny, "kubernetes-default-deny", 5),
]


@pytest.mark.parametrize(("breakage", "policy", "count"), BREAKAGES)
def test_each_breakage_is_reported_by_its_rule(
    k8s_run: StackRun, breakage: Callable[[list[View]], None], policy: str, count: int
) -> None:
    resources = copy.deepcopy(views(k8s_run))
    breakage(resources)
    found = violations(resources)
    assert [v.split(":", 1)[0] for v in found] == [policy] * count, found


# --- the pack as Pulumi runs it ---------------------------------------------------------


def _stack_request(resources: list[View]) -> Any:
    return analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=typ, properties=_struct(props), urn=f"urn:{name}", name=name
            )
            for typ, name, props in resources
        ]
    )


@pytest.mark.process
def test_the_pack_process_passes_the_k8s_stack_and_reports_a_missing_deny(
    analyzer: analyzer_pb2_grpc.AnalyzerStub,
    k8s_run: StackRun,
) -> None:
    resources = views(k8s_run)
    for typ, name, props in resources:
        response = analyzer.Analyze(
            analyzer_pb2.AnalyzeRequest(
                type=typ, properties=_struct(props), urn=f"urn:{name}", name=name
            ),
            timeout=30,
        )
        assert [d.message for d in response.diagnostics] == [], name
    clean = analyzer.AnalyzeStack(_stack_request(resources), timeout=30)
    assert [d.message for d in clean.diagnostics] == []
    broken = copy.deepcopy(resources)
    _no_default_deny(broken)
    reported = analyzer.AnalyzeStack(_stack_request(broken), timeout=30)
    assert {d.policyName for d in reported.diagnostics} == {"kubernetes-default-deny"}
