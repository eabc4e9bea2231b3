"""The stack's invariants for Kubernetes resources, as pure functions over manifests.

Same contract as `rules.py`: a rule takes a resource's type token
(`kubernetes:apps/v1:Deployment`) and its properties (the manifest, camelCase) and
returns one message per violation. Pod templates are found wherever a workload keeps
them (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod). As there,
secret values reach a policy pack decrypted, so `secrets_from_secrets` checks the
shape (a secret-named variable must come from a Secret), not the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from llm_stack.policy.common import SECRET_NAME_RE, ResourceView, image_problem

_WORKLOAD_RE = re.compile(
    r"^kubernetes:(?:apps/v1:(?:Deployment|StatefulSet|DaemonSet|ReplicaSet)|batch/v1:(?:Job|CronJob)|core/v1:Pod)$"
)
# Workloads that run to completion: no probes expected.
_RUN_TO_COMPLETION = frozenset({"kubernetes:batch/v1:Job", "kubernetes:batch/v1:CronJob"})
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
# An extended resource that is a GPU or a slice of one (nvidia.com/gpu, amd.com/gpu,
# gpu.intel.com/i915, nvidia.com/mig-1g.10gb).
_GPU_RESOURCE_RE = re.compile(r"gpu|/mig-")
_SECRET_TEXT_RE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|requirepass\s+\S")


def is_workload(resource_type: str) -> bool:
    return bool(_WORKLOAD_RE.match(resource_type))


def pod_spec_of(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec a workload runs (None for anything else)."""
    if not is_workload(resource_type):
        return None
    if resource_type == "kubernetes:core/v1:Pod":
        spec = props.get("spec")
    elif resource_type == "kubernetes:batch/v1:CronJob":
        job = ((props.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}
        spec = (job.get("template") or {}).get("spec")
    else:
        spec = ((props.get("spec") or {}).get("template") or {}).get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _describe(resource_type: str, props: Mapping[str, Any]) -> str:
    metadata = props.get("metadata") or {}
    kind = resource_type.rsplit(":", 1)[-1]
    return f"{kind} {metadata.get('name') or '<unnamed>'}"


def _containers(
    pod: Mapping[str, Any], *, init: bool = True
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    groups = ["containers", "initContainers"] if init else ["containers"]
    for group in groups:
        for container in pod.get(group) or []:
            if isinstance(container, Mapping):
                yield group, container


def _container_name(group: str, container: Mapping[str, Any]) -> str:
    kind = "init container" if group == "initContainers" else "container"
    return f"{kind} {container.get('name') or '<unnamed>'}"


def _pod_containers(
    resource_type: str, props: Mapping[str, Any], *, init: bool = True
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each container of a workload's pod, with the words that name it in a message
    ("Deployment gateway: container gateway"); nothing for other resources."""
    pod = pod_spec_of(resource_type, props)
    if pod is None:
        return
    what = _describe(resource_type, props)
    for group, container in _containers(pod, init=init):
        yield f"{what}: {_container_name(group, container)}", container


# --- resource rules -------------------------------------------------------------------


def pinned_images(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    problems = []
    for where, container in _pod_containers(resource_type, props):
        image = container.get("image")
        problem = image_problem(str(image)) if image else "no image"
        if problem is not None:
            problems.append(f"{where}: {problem}")
    return problems


def probes(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every long-running container is probed for readiness and liveness."""
    if resource_type in _RUN_TO_COMPLETION:
        return []
    problems = []
    for where, container in _pod_containers(resource_type, props, init=False):
        missing = [p for p in ("readinessProbe", "livenessProbe") if not container.get(p)]
        if missing:
            problems.append(f"{where} has no {' or '.join(missing)}")
    return problems


def resources(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Requests and limits of CPU and memory on every container, init containers too."""
    problems = []
    for where, container in _pod_containers(resource_type, props):
        given = container.get("resources") or {}
        missing = [
            f"{kind}.{name}"
            for kind in ("requests", "limits")
            for name in ("cpu", "memory")
            if not (given.get(kind) or {}).get(name)
        ]
        if missing:
            problems.append(f"{where} sets no {', '.join(missing)}")
    return problems


def pod_security(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No privileged pods: non-root, no escalation, no capabilities, read-only root, no
    host namespaces or host paths."""
    pod = pod_spec_of(resource_type, props)
    if pod is None:
        return []
    what = _describe(resource_type, props)
    problems = [
        f"{what}: {field} shares the node's namespace"
        for field in ("hostNetwork", "hostPID", "hostIPC")
        if pod.get(field)
    ]
    problems += [
        f"{what}: volume {v.get('name')} mounts a host path"
        for v in pod.get("volumes") or []
        if isinstance(v, Mapping) and v.get("hostPath") is not None
    ]
    pod_context = pod.get("securityContext") or {}
    for where, container in _pod_containers(resource_type, props):
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            problems.append(f"{where} is privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where} does not set allowPrivilegeEscalation: false")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where} does not set readOnlyRootFilesystem: true")
        dropped = [str(c) for c in (context.get("capabilities") or {}).get("drop") or []]
        if "ALL" not in dropped:
            problems.append(f"{where} does not drop ALL capabilities")
        if (context.get("capabilities") or {}).get("add"):
            problems.append(f"{where} adds capabilities")
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        user = context.get("runAsUser", pod_context.get("runAsUser"))
        if non_root is not True or user in (0, 0.0):
            problems.append(f"{where} may run as root (runAsNonRoot: true, a non-zero user)")
    return problems


def _quantity(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def distinct_gpus(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A GPU container asks the device plugin for exactly one device (its own), and no
    container widens what it sees with NVIDIA_VISIBLE_DEVICES=all."""
    problems = []
    for where, container in _pod_containers(resource_type, props):
        given = container.get("resources") or {}
        limits, requests = given.get("limits") or {}, given.get("requests") or {}
        for name in sorted({*limits, *requests}):
            if not _GPU_RESOURCE_RE.search(str(name)):
                continue
            if _quantity(limits.get(name)) != "1":
                problems.append(f"{where}: limits.{name} must be 1 (one GPU per pod)")
            if name in requests and _quantity(requests[name]) != _quantity(limits.get(name)):
                problems.append(f"{where}: requests.{name} differs from its limit")
        for entry in container.get("env") or []:
            if (
                isinstance(entry, Mapping)
                and entry.get("name") == "NVIDIA_VISIBLE_DEVICES"
                and str(entry.get("value", "")).strip().lower() == "all"
            ):
                problems.append(
                    f"{where}: NVIDIA_VISIBLE_DEVICES=all shows it every GPU of the node"
                )
    return problems


def secrets_from_secrets(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Secret-named variables come from a Secret; ConfigMaps hold no key or password."""
    if resource_type == CONFIG_MAP:
        what = _describe(resource_type, props)
        data = props.get("data") or {}
        return [
            f"{what}: {key} holds a private key or a password; use a Secret"
            for key, value in sorted(data.items())
            if _SECRET_TEXT_RE.search(str(value))
        ]
    problems = []
    for where, container in _pod_containers(resource_type, props):
        for entry in container.get("env") or []:
            if not isinstance(entry, Mapping):
                continue
            name = str(entry.get("name", "")).upper()
            if name.endswith("_FILE") or not SECRET_NAME_RE.search(name):
                continue
            if "value" in entry or "configMapKeyRef" in (entry.get("valueFrom") or {}):
                problems.append(
                    f"{where}: {entry.get('name')} must come from a Secret (valueFrom.secretKeyRef)"
                )
    return problems


HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
# The grace period the kubelet gives a pod that sets none.
DEFAULT_GRACE_SECONDS = 30


def route_timeouts(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every HTTPRoute rule says its request timeout: unset, each Gateway picks its own,
    and Envoy Gateway's 15 s for the whole response cuts every longer generation."""
    if resource_type != HTTP_ROUTE:
        return []
    what = _describe(resource_type, props)
    return [
        f"{what}: rule {index} sets no timeouts.request (Envoy Gateway cuts responses at 15 s)"
        for index, rule in enumerate((props.get("spec") or {}).get("rules") or [])
        if not ((rule or {}).get("timeouts") or {}).get("request")
    ]


def _sleep_seconds(hook: Any) -> int | None:
    command = ((hook or {}).get("exec") or {}).get("command") or []
    if len(command) == 2 and command[0] == "sleep" and str(command[1]).isdigit():
        return int(command[1])
    return None


def pre_stop_within_grace(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A preStop sleep ends before the grace period does: the kubelet counts the hook
    in the grace period, so a sleep as long leaves the process no time to stop cleanly."""
    pod = pod_spec_of(resource_type, props)
    if pod is None:
        return []
    grace = pod.get("terminationGracePeriodSeconds")
    grace = DEFAULT_GRACE_SECONDS if grace is None else int(grace)
    problems = []
    for where, container in _pod_containers(resource_type, props, init=False):
        sleep = _sleep_seconds((container.get("lifecycle") or {}).get("preStop"))
        if sleep is not None and sleep >= grace:
            problems.append(
                f"{where}: its preStop sleeps {sleep} s of a {grace} s grace period, "
                "leaving no time for a graceful stop"
            )
    return problems


KUBERNETES_RULES: dict[str, Callable[[str, Mapping[str, Any]], list[str]]] = {
    "kubernetes-pinned-images": pinned_images,
    "kubernetes-probes": probes,
    "kubernetes-resources": resources,
    "kubernetes-pod-security": pod_security,
    "kubernetes-distinct-gpus": distinct_gpus,
    "kubernetes-secrets": secrets_from_secrets,
    "kubernetes-route-timeouts": route_timeouts,
    "kubernetes-prestop-grace": pre_stop_within_grace,
}


# --- stack rule: a default deny in every namespace with workloads -----------------------


def _is_default_deny(props: Mapping[str, Any]) -> bool:
    spec = props.get("spec") or {}
    selector = spec.get("podSelector")
    if selector is None or any((selector or {}).values()):
        return False
    types = set(spec.get("policyTypes") or [])
    return types == {"Ingress", "Egress"} and not spec.get("ingress") and not spec.get("egress")


def default_deny(resources: Sequence[ResourceView]) -> list[str]:
    """Each namespace that runs a workload of the stack has a default-deny policy."""
    denied = {
        (r.props.get("metadata") or {}).get("namespace")
        for r in resources
        if r.resource_type == NETWORK_POLICY and _is_default_deny(r.props)
    }
    problems = []
    for r in resources:
        if not is_workload(r.resource_type):
            continue
        namespace = (r.props.get("metadata") or {}).get("namespace")
        if namespace not in denied:
            problems.append(
                f"{_describe(r.resource_type, r.props)}: namespace {namespace!r} has no "
                "default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)"
            )
    return problems
