"""The Kubernetes stacks the tests run: Pulumi.k8s.yaml, and variants covering the
other branches (least-conn with a balancer, our own Prometheus, a LoadBalancer, a
self-signed certificate, a shared models claim, CPU-only pods)."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any

from tests.infra.stack_run import StackRun, run_stack, stack_values

K8S_SECRETS: dict[str, Any] = {
    "redisPassword": "r3dis-pass-for-tests-0123456789",
    "apiKeys": {
        "team-a": {"digest": hashlib.sha256(b"llmsk-team-a").hexdigest(), "requestsPerMinute": 60}
    },
}


def k8s_values(**sections: Mapping[str, Any] | str) -> dict[str, Any]:
    """Pulumi.k8s.yaml's values with its secrets, sections replaced or merged in."""
    values = copy.deepcopy(stack_values("k8s", K8S_SECRETS))
    for key, value in sections.items():
        if isinstance(value, Mapping) and isinstance(values.get(key), Mapping):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def alt_values() -> dict[str, Any]:
    """Every branch Pulumi.k8s.yaml does not take."""
    values = k8s_values(
        environment="test",
        gateway={"routing": "least-conn", "replicas": 1},
        edge={"tls": "self-signed"},
    )
    kube = values["kubernetes"]
    kube.pop("certManager")
    kube.pop("prometheusOperator")
    kube["createNamespace"] = False
    kube["gpu"] = {"enabled": False}
    kube["models"] = {"size": "50Gi", "shared": True}
    kube["expose"] = {
        "type": "load-balancer",
        "sourceRanges": ["203.0.113.0/24"],
        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
    }
    kube["autoscaling"] = {"maxReplicas": 3}
    return values


def route_values() -> dict[str, Any]:
    """An HTTPRoute to a self-signed edge, KEDA asking our own Prometheus, dev keys; and
    the optional knobs: a runtime class, dual-stack, a pinned model, tracing to an
    in-cluster collector, OpenShift's DNS."""
    values = k8s_values(
        environment="dev",
        edge={"tls": "self-signed"},
        gateway={"tracing": {"enabled": True, "endpoint": "http://otel.observability:4318"}},
    )
    for secret in ("apiKeys", "redisPassword"):
        values.pop(secret)
    kube = values["kubernetes"]
    kube.pop("certManager")
    kube.pop("prometheusOperator")
    kube["autoscaling"] = {"maxReplicas": 4, "keda": {"queueDepthPerReplica": 4}}
    kube["gpu"] = {**kube["gpu"], "runtimeClassName": "nvidia"}
    kube["ipv6"] = True
    kube["models"] = {
        **kube["models"],
        "digests": {"llama3.1:8b": "sha256:" + "ab" * 32},
        "warm": ["llama3.1:8b"],
    }
    kube["traceCollector"] = {"namespace": "observability", "podLabels": {"app": "otel"}}
    kube["dns"] = {"namespace": "openshift-dns", "ports": [5353], "cidrs": []}
    return values


def run_k8s(values: Mapping[str, Any]) -> StackRun:
    return run_stack("k8s", values)
