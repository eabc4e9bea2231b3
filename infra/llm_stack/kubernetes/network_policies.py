"""The stack's network segmentation as NetworkPolicies, from a default deny.

Nothing in the namespace talks to anything until a policy below allows it (both
directions: an allowed connection needs the sender's egress and the receiver's
ingress). Every pod may ask the cluster DNS; beyond that:

    outside  -> edge (its TLS and redirect ports)
    edge     -> gateway
    gateway  -> redis, and ollama (model-aware) or the balancer (least-conn)
    balancer -> ollama
    Prometheus (ours, or the operator's namespace) -> gateway and nginx exporters
    KEDA     -> our Prometheus (when KEDA queries it)
    pullers  -> public HTTPS only (never a private range or the metadata address)

Pulling happens in the Ollama pods' init container (a volume per pod) or in the puller
Job (a shared claim); egress follows it, since a policy cannot tell an init container
from the server of the same pod. These policies need a CNI that enforces them (Calico,
Cilium, ...); on one that does not, they are accepted and do nothing.
"""

from __future__ import annotations

from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
from llm_config.kubernetes import EDGE_CONTAINER_HTTP_PORT, EDGE_CONTAINER_HTTPS_PORT
from llm_config.model import StackConfig

from llm_stack.kubernetes import names as n
from llm_stack.kubernetes import workload as w
from llm_stack.kubernetes.edge import EXPORTER_LABEL
from llm_stack.shared.names import OLLAMA_PORT, PROMETHEUS_PORT, REDIS_PORT

DEFAULT_DENY: Final = "default-deny"
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
# Never reachable by a puller: private and shared ranges, link-local (cloud metadata).
NOT_PUBLIC: Final = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
)


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def policy_specs(config: StackConfig) -> dict[str, dict[str, Any]]:
    """Policy name suffix -> NetworkPolicy spec, for this stack."""
    kube = config.kubernetes
    assert kube is not None
    names = n.KubeNames.of(config)

    def pods(role: str) -> dict[str, Any]:
        return {"podSelector": {"matchLabels": names.selector(role)}}

    everything_in_stack = {"podSelector": {"matchLabels": {n.INSTANCE_LABEL: names.prefix}}}
    exporters = {
        "podSelector": {"matchLabels": {n.INSTANCE_LABEL: names.prefix, EXPORTER_LABEL: "true"}}
    }
    gateway_port = config.gateway.port
    least_conn = config.gateway.routing == "least-conn"
    operator = kube.prometheus_operator
    scraper = _namespace(operator.namespace) if operator is not None else pods(n.PROMETHEUS)
    public_https = {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NOT_PUBLIC)}}],
        "ports": _tcp(443),
    }

    specs: dict[str, dict[str, Any]] = {
        DEFAULT_DENY: {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "dns": {
            **everything_in_stack,
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [_namespace("kube-system")],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        },
        n.EDGE: {
            **pods(n.EDGE),
            "policyTypes": ["Ingress", "Egress"],
            # From anywhere: the load balancer keeps client addresses, and a Gateway's
            # proxies live wherever its implementation runs.
            "ingress": [{"ports": _tcp(EDGE_CONTAINER_HTTPS_PORT, EDGE_CONTAINER_HTTP_PORT)}],
            "egress": [{"to": [pods(n.GATEWAY)], "ports": _tcp(gateway_port)}],
        },
        n.GATEWAY: {
            **pods(n.GATEWAY),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [pods(n.EDGE), scraper], "ports": _tcp(gateway_port)}],
            "egress": [
                {"to": [pods(n.REDIS)], "ports": _tcp(REDIS_PORT)},
                (
                    {"to": [pods(n.BALANCER)], "ports": _tcp(config.balancer.port)}
                    if least_conn
                    else {"to": [pods(n.OLLAMA)], "ports": _tcp(OLLAMA_PORT)}
                ),
            ],
        },
        n.REDIS: {
            **pods(n.REDIS),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [pods(n.GATEWAY)], "ports": _tcp(REDIS_PORT)}],
            "egress": [],
        },
        n.OLLAMA: {
            **pods(n.OLLAMA),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [pods(n.BALANCER if least_conn else n.GATEWAY)],
                    "ports": _tcp(OLLAMA_PORT),
                }
            ],
            # A volume per pod: its init container pulls. A shared claim: the Job does.
            "egress": [] if kube.models.shared else [public_https],
        },
        "exporters": {
            **exporters,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [scraper], "ports": _tcp(n.NGINX_EXPORTER_PORT)}],
        },
    }
    if kube.models.shared:
        specs[n.MODEL_PULLER] = {
            **pods(n.MODEL_PULLER),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [public_https],
        }
    if least_conn:
        specs[n.BALANCER] = {
            **pods(n.BALANCER),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [pods(n.GATEWAY)], "ports": _tcp(config.balancer.port)}],
            "egress": [{"to": [pods(n.OLLAMA)], "ports": _tcp(OLLAMA_PORT)}],
        }
    if operator is None:
        ingress = []
        if kube.autoscaling.keda is not None and kube.autoscaling.keda.prometheus_url is None:
            ingress.append(
                {
                    "from": [_namespace(kube.autoscaling.keda.namespace)],
                    "ports": _tcp(PROMETHEUS_PORT),
                }
            )
        specs[n.PROMETHEUS] = {
            **pods(n.PROMETHEUS),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": [
                {"to": [pods(n.GATEWAY)], "ports": _tcp(gateway_port)},
                {"to": [exporters], "ports": _tcp(n.NGINX_EXPORTER_PORT)},
            ],
        }
    return specs


class NetworkPolicies(pulumi.ComponentResource):
    policies: dict[str, k8s.networking.v1.NetworkPolicy]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        namespace: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("llm-stack:kubernetes:NetworkPolicies", name, None, opts)
        names = n.KubeNames.of(config)
        self.policies = {
            suffix: k8s.networking.v1.NetworkPolicy(
                f"netpol-{suffix}",
                metadata=w.metadata(
                    names, "network-policy", names.object("netpol", suffix), namespace
                ),
                spec=spec,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for suffix, spec in policy_specs(config).items()
        }
        self.register_outputs({})
