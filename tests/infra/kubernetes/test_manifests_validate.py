"""Every manifest of the Kubernetes stacks passes the API's own schemas, strictly.

Built-in kinds go through `kubernetes-validate --strict` (unknown fields are errors) for
three minor versions that clusters run today; custom resources (KEDA, Prometheus
Operator, Gateway API, cert-manager) through their published JSON schemas kept in
`schemas/` (see its README for sources and versions).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.infra.kubernetes.manifests import manifests
from tests.infra.stack_run import StackRun

# Every manifest against three Kubernetes versions' schemas: seconds of CPU each.
pytestmark = pytest.mark.slow

KUBERNETES_VERSIONS = ("1.31", "1.33", "1.35")
SCHEMAS = Path(__file__).parent / "schemas"
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh/scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com/servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com/prometheusrule_v1.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "gateway.networking.k8s.io/httproute_v1.json",
    (
        "gateway.networking.k8s.io/v1",
        "BackendTLSPolicy",
    ): "gateway.networking.k8s.io/backendtlspolicy_v1.json",
    ("cert-manager.io/v1", "Certificate"): "cert-manager.io/certificate_v1.json",
}


@cache
def _validator(path: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / path).read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    # No check_schema: the PrometheusRule schema carries a Go regex (`^(?i)...`) that
    # Python's `re` refuses as a pattern; it only matters for a field the stack omits.
    return cls(schema)


def problems(manifest: dict[str, Any]) -> list[str]:
    """Every schema error of one manifest, for each version (empty when it is valid)."""
    what = f"{manifest['kind']} {manifest['metadata']['name']}"
    key = (manifest["apiVersion"], manifest["kind"])
    if key in CUSTOM:
        return [
            f"{what}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in _validator(CUSTOM[key]).iter_errors(manifest)
        ]
    found = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            found.append(f"{what} (Kubernetes {version}): {exc.path}: {exc.message}")
    return found


def test_every_manifest_validates(each_k8s: tuple[StackRun, Any]) -> None:
    run, _ = each_k8s
    found = manifests(run)
    assert len(found) > 20
    assert [p for m in found for p in problems(m)] == []


BUILT_IN = {"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1"}


def test_every_custom_resource_kind_is_covered(
    k8s_run: StackRun, alt_run: StackRun, route_run: StackRun
) -> None:
    """The stacks declare every custom kind the program can, and each has a schema."""
    declared = {
        (m["apiVersion"], m["kind"])
        for run in (k8s_run, alt_run, route_run)
        for m in manifests(run)
        if m["apiVersion"] not in BUILT_IN
    }
    assert declared == set(CUSTOM)


def _first(run: StackRun, kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(m for m in manifests(run) if m["kind"] == kind))


def test_strict_validation_refuses_an_unknown_field(k8s_run: StackRun) -> None:
    """A snake_case key (a typo the SDK would pass through in a plain dict) fails."""
    deployment = _first(k8s_run, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["security_context"] = container.pop("securityContext")
    assert any("security_context" in p for p in problems(deployment))


def test_a_wrong_type_fails(k8s_run: StackRun) -> None:
    statefulset = _first(k8s_run, "StatefulSet")
    statefulset["spec"]["replicas"] = "three"
    assert problems(statefulset)


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("ScaledObject", ("spec", "min_replica_count"), 1),
        ("ServiceMonitor", ("spec", "endpoints", 0, "scrape_interval"), "15s"),
        ("HTTPRoute", ("spec", "rules", 0, "backendRefs", 0, "service"), "x"),
        ("Certificate", ("spec", "dns_names"), ["x"]),
        ("PrometheusRule", ("spec", "groups", 0, "rules", 0, "severity"), "page"),
        ("BackendTLSPolicy", ("spec", "validation", "ca"), "x"),
    ],
)
def test_custom_resource_schemas_refuse_unknown_fields(
    k8s_run: StackRun, kind: str, path: tuple[Any, ...], value: Any
) -> None:
    manifest = _first(k8s_run, kind)
    target: Any = manifest
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert problems(manifest), f"{kind}: {path[-1]} was accepted"
