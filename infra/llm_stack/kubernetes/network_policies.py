"""The stack's network segmentation as NetworkPolicies, from a default deny.

Nothing in the namespace talks to anything until a policy below allows it (both
directions: an allowed connection needs the sender's egress and the receiver's
ingress). Every pod may ask the cluster DNS (`kubernetes.dns`: its namespace and
labels, and by address, since NodeLocal DNSCache runs on the host network where no
selector reaches); beyond that:

    outside  -> edge (its TLS and redirect ports)
    outside  -> cert-manager's HTTP-01 solver pods (port 8089), with an http-01 issuer
    edge     -> gateway
    gateway  -> redis (state) and redis-cache, and ollama (model-aware) or the
                balancer (least-conn)
    gateway  -> the trace collector (with tracing on)
    ollama   -> gateway (the drain sidecar, model-aware)
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
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s
from llm_config.kubernetes import (
    EDGE_CONTAINER_HTTP_PORT,
    EDGE_CONTAINER_HTTPS_PORT,
    NODE_LOCAL_DNS,
)
from llm_config.model import StackConfig

from llm_stack.kubernetes import drain
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
NOT_PUBLIC_V6: Final = ("fc00::/7", "fe80::/10", "::ffff:0:0/96")
# cert-manager labels its HTTP-01 solver pods so (SolverIdentificationLabelKey), in
# the Certificate's namespace; the acmesolver listens on 8089 (acmeSolverListenPort).
ACME_SOLVER_LABEL: Final = "acme.cert-manager.io/http01-solver"
ACME_SOLVER_PORT: Final = 8089


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def _host(cidr: str) -> str:
    """A single address as a CIDR (/32 or /128); a CIDR as it is."""
    return cidr if "/" in cidr else f"{cidr}/{128 if ':' in cidr else 32}"


def dns_egress(config: StackConfig) -> dict[str, Any]:
    """To the cluster DNS: its pods by namespace (and labels), and by address."""
    kube = config.kubernetes
    assert kube is not None
    dns = kube.dns
    peer: dict[str, Any] = _namespace(dns.namespace)
    if dns.pod_labels:
        peer["podSelector"] = {"matchLabels": dict(dns.pod_labels)}
    cidrs = dns.cidrs if dns.cidrs is not None else [kube.dns_resolver, NODE_LOCAL_DNS]
    peers = [peer, *({"ipBlock": {"cidr": _host(c)}} for c in dict.fromkeys(cidrs))]
    ports = [{"protocol": proto, "port": p} for p in dns.ports for proto in ("UDP", "TCP")]
    return {"to": peers, "ports": ports}


def trace_egress(config: StackConfig) -> dict[str, Any] | None:
    """To the OTLP collector, when the gateway exports traces."""
    kube = config.kubernetes
    assert kube is not None
    tracing = config.gateway.tracing
    if not tracing.enabled or tracing.endpoint is None:
        return None
    url = urlsplit(tracing.endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    collector = kube.trace_collector
    peers: list[dict[str, Any]] = [{"ipBlock": {"cidr": _host(c)}} for c in collector.cidrs]
    if collector.namespace is not None:
        peer = _namespace(collector.namespace)
        if collector.pod_labels:
            peer["podSelector"] = {"matchLabels": dict(collector.pod_labels)}
        peers.append(peer)
    rule: dict[str, Any] = {"ports": _tcp(port)}
    if peers:
        rule["to"] = peers
    return rule


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
    scraper = pods(n.PROMETHEUS)
    if operator is not None:
        scraper = _namespace(operator.namespace)
        if operator.pod_labels:
            scraper["podSelector"] = {"matchLabels": dict(operator.pod_labels)}
    public = [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NOT_PUBLIC)}}]
    if kube.ipv6:
        public.append({"ipBlock": {"cidr": "::/0", "except": list(NOT_PUBLIC_V6)}})
    public_https = {"to": public, "ports": _tcp(443)}
    drains = drain.enabled(config)
    gateway_egress: list[dict[str, Any]] = [
        {"to": [pods(n.REDIS), pods(n.REDIS_CACHE)], "ports": _tcp(REDIS_PORT)},
        (
            {"to": [pods(n.BALANCER)], "ports": _tcp(config.balancer.port)}
            if least_conn
            else {"to": [pods(n.OLLAMA)], "ports": _tcp(OLLAMA_PORT)}
        ),
    ]
    traces = trace_egress(config)
    if traces is not None:
        gateway_egress.append(traces)
    ollama_egress: list[dict[str, Any]] = [] if kube.models.shared else [public_https]
    gateway_sources = [pods(n.EDGE), scraper]
    if drains:
        # The drain sidecar asks the gateway to drain its pod.
        ollama_egress.append({"to": [pods(n.GATEWAY)], "ports": _tcp(gateway_port)})
        gateway_sources.append(pods(n.OLLAMA))

    specs: dict[str, dict[str, Any]] = {
        DEFAULT_DENY: {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "dns": {
            **everything_in_stack,
            "policyTypes": ["Egress"],
            "egress": [dns_egress(config)],
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
            "ingress": [{"from": gateway_sources, "ports": _tcp(gateway_port)}],
            "egress": gateway_egress,
        },
        n.REDIS: {
            **pods(n.REDIS),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [pods(n.GATEWAY)], "ports": _tcp(REDIS_PORT)}],
            "egress": [],
        },
        n.REDIS_CACHE: {
            **pods(n.REDIS_CACHE),
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
            "egress": ollama_egress,
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
    cert_manager = kube.cert_manager
    if (
        config.edge.tls == "cert-manager"
        and cert_manager is not None
        and cert_manager.challenge == "http-01"
    ):
        # The ACME server reaches the solver through the Gateway or ingress controller,
        # wherever that runs; cert-manager's self-check goes the same way.
        specs["acme-solver"] = {
            "podSelector": {"matchLabels": {ACME_SOLVER_LABEL: "true"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": _tcp(ACME_SOLVER_PORT)}],
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
        keda = kube.autoscaling.keda
        if (
            keda is not None
            and keda.prometheus_url is None
            and keda.queue_depth_per_replica is not None
        ):
            ingress.append(
                {
                    "from": [_namespace(keda.namespace)],
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
