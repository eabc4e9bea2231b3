"""What every pod of the stack has in common: hardening, resources, probes, hashes.

Pure functions returning manifest fragments (camelCase dicts, as the API takes them).
Every pod runs as a non-root user with a read-only root filesystem, no capabilities,
no privilege escalation, the runtime's default seccomp profile and no service-account
token; every container has requests and limits. Writable paths are emptyDirs or
volumes, named where a pod is built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from llm_config.model import StackConfig

from llm_stack.kubernetes import names as n
from llm_stack.redis_conf import RedisRole, maxmemory_mb

# A uid/gid per role, above 10000 so that none matches a user of the node.
USERS: Final[dict[str, int]] = {
    n.OLLAMA: 10434,
    n.MODEL_PULLER: 10434,
    n.REDIS: 10379,
    n.REDIS_CACHE: 10379,
    # The gateway image's own user (gateway/Dockerfile).
    n.GATEWAY: 10001,
    n.EDGE: 10101,
    n.BALANCER: 10101,
    n.PROMETHEUS: 10090,
}
EXPORTER_USER: Final = 10113
CONFIG_HASH_ANNOTATION: Final = "llm-stack/config-sha256"


def pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        # Volumes are made writable for the pod's group.
        "fsGroup": uid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def hardened(container: Mapping[str, Any]) -> dict[str, Any]:
    """A container with the stack's security context and pull policy."""
    return {
        **container,
        # Images are pinned to exact tags or digests: a cached image is the right one.
        "imagePullPolicy": "IfNotPresent",
        # A container may add to the stack's context (its own user), never remove from it.
        "securityContext": {**container_security(), **container.get("securityContext", {})},
    }


def resources(
    cpu_request: str, memory_request: str, cpu_limit: str, memory_limit: str
) -> dict[str, dict[str, str]]:
    return {
        "requests": {"cpu": cpu_request, "memory": memory_request},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def _mib(value: int) -> str:
    return f"{value}Mi"


def role_resources(config: StackConfig, role: str) -> dict[str, dict[str, str]]:
    """Requests and limits of a role's main container (memory from the stack config)."""
    if role == n.OLLAMA:
        memory = _mib(config.ollama.memory_mb or 16384)
        # Memory requested = limit: a model load must never be the pod the node evicts.
        return resources("2", memory, "8", memory)
    if role == n.MODEL_PULLER:
        return resources("250m", "512Mi", "2", "2Gi")
    if role == n.GATEWAY:
        workers = config.gateway.workers
        gateway_mb = config.gateway.memory_mb or 256 + 256 * workers
        return resources(f"{250 * workers}m", _mib(gateway_mb), str(workers), _mib(gateway_mb))
    if role in (n.EDGE, n.BALANCER):
        return resources("100m", "128Mi", "1", "256Mi")
    if role in (n.REDIS, n.REDIS_CACHE):
        memory = _mib(redis_memory_mb(config, "state" if role == n.REDIS else "cache"))
        return resources("100m", memory, "1", memory)
    if role == n.PROMETHEUS:
        return resources("250m", "1Gi", "1", "4Gi")
    raise ValueError(f"no resources for role {role!r}")


EXPORTER_RESOURCES: Final = resources("10m", "32Mi", "100m", "64Mi")


def redis_memory_mb(config: StackConfig, role: RedisRole = "state") -> int:
    """Redis's memory limit: maxmemory counts the data only.

    Allocator fragmentation (jemalloc, often 1.1-1.3x of the data) and the copy-on-write
    pages of the forked AOF rewrite come on top; an OOM kill takes the limits and
    quotas down with Redis (the gateway fails open). So maxmemory is two thirds of the
    limit, plus room for Redis itself and its client buffers.
    """
    return maxmemory_mb(config, role) * 3 // 2 + 128


def cpu_count(quantity: str) -> int:
    """Whole CPUs in a CPU quantity ("1", "2", "500m"), at least one."""
    if quantity.endswith("m"):
        return max(1, -(-int(quantity[:-1]) // 1000))
    return max(1, -(-int(float(quantity) * 1000) // 1000))


def http_probe(
    path: str,
    port: int | str,
    *,
    period_seconds: int = 10,
    timeout_seconds: int = 5,
    failure_threshold: int = 3,
) -> dict[str, Any]:
    """An HTTP probe: kubelet's own client, so the image needs no curl."""
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period_seconds,
        "timeoutSeconds": timeout_seconds,
        "failureThreshold": failure_threshold,
    }


def startup_probe(path: str, port: int | str, budget_seconds: int) -> dict[str, Any]:
    """Allows `budget_seconds` before liveness takes over (a model load, a first start)."""
    period = 10
    return http_probe(
        path, port, period_seconds=period, failure_threshold=max(3, -(-budget_seconds // period))
    )


def spread(selector: Mapping[str, str]) -> dict[str, Any]:
    """Prefer pods of one role on different nodes, so that one node failing costs one."""
    return {
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": dict(selector)},
            }
        ]
    }


def empty_dir(name: str, size: str = "256Mi") -> dict[str, Any]:
    return {"name": name, "emptyDir": {"sizeLimit": size}}


def pod_spec(
    uid: int,
    containers: Sequence[Mapping[str, Any]],
    *,
    volumes: Sequence[Mapping[str, Any]] = (),
    init_containers: Sequence[Mapping[str, Any]] = (),
    termination_grace_seconds: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        # No pod of the stack talks to the Kubernetes API.
        "automountServiceAccountToken": False,
        # Service environment variables would leak every Service of the namespace into
        # each container (and the gateway reads GATEWAY_* only, by design).
        "enableServiceLinks": False,
        "securityContext": pod_security(uid),
        "containers": [hardened(c) for c in containers],
    }
    if init_containers:
        spec["initContainers"] = [hardened(c) for c in init_containers]
    if volumes:
        spec["volumes"] = list(volumes)
    if termination_grace_seconds is not None:
        spec["terminationGracePeriodSeconds"] = termination_grace_seconds
    spec.update(extra or {})
    return spec


def pod_template(
    labels: Mapping[str, str], spec: Mapping[str, Any], config_hash: Any = None
) -> dict[str, Any]:
    """A pod template; `config_hash` (plain or an Output) rolls the pods when it changes."""
    metadata: dict[str, Any] = {"labels": dict(labels)}
    if config_hash is not None:
        metadata["annotations"] = {CONFIG_HASH_ANNOTATION: config_hash}
    return {"metadata": metadata, "spec": dict(spec)}


def text_hash(texts: Iterable[str]) -> str:
    """A stable digest of config texts, for the pod template annotation."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()


def env_list(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def metadata(
    names: n.KubeNames, role: str, name: str, namespace: Any, **extra: Any
) -> dict[str, Any]:
    """Object metadata; `namespace` is the Namespace's name Output where the stack makes
    it, so that every object is created after its namespace."""
    return {"name": name, "namespace": namespace, "labels": names.labels(role), **extra}
