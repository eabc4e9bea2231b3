"""The manifests a mocked run declared, rebuilt from the inputs the provider received.

pulumi-kubernetes hands the engine each object with `apiVersion` and `kind` filled in
and camelCase fields, so a mocked resource's inputs are its manifest: only secret
markers are removed and whole numbers (floats on the wire) made integers again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.infra.stack_run import Declared, StackRun, unwrap

K8S_PREFIX = "kubernetes:"


def normalize(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def kube_resources(run: StackRun) -> list[Declared]:
    return [r for r in run.resources if r.type.startswith(K8S_PREFIX)]


def manifest(resource: Declared) -> dict[str, Any]:
    result: dict[str, Any] = normalize(unwrap(dict(resource.inputs)))
    return result


def manifests(run: StackRun) -> list[dict[str, Any]]:
    return [manifest(r) for r in kube_resources(run)]


def of_kind(run: StackRun, kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests(run) if m["kind"] == kind]


def named(run: StackRun, kind: str, name: str) -> dict[str, Any]:
    (found,) = [m for m in of_kind(run, kind) if m["metadata"]["name"] == name]
    return found


def pod_specs(run: StackRun) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload manifest, its pod spec) for every workload."""
    for m in manifests(run):
        if m["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield m, m["spec"]["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or the valueFrom mapping for a referenced one."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
