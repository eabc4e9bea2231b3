"""The `kubernetes` section: what a cluster needs beyond the platform-neutral config.

Read only when `platform: kubernetes`. The kube context itself is not here: it is the
`kubernetes:` provider's own config (`pulumi config set kubernetes:context <name>`).
`platform_problems` lists the combinations that cannot deploy, so they are refused
with the rest of the config, before any resource exists.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from llm_config.fields import PinnedImage, Section

if TYPE_CHECKING:
    from llm_config.model import StackConfig

# RFC 1123 label (namespaces, object names) and subdomain (DNS names, label prefixes).
_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$")
# A label key: optional `prefix/` (a DNS subdomain) and a name of up to 63 characters.
_LABEL_KEY_RE = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")
# A storage quantity such as 100Gi or 500M.
_QUANTITY_RE = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
# An extended resource: a domain-prefixed name (nvidia.com/gpu, amd.com/gpu).
_EXTENDED_RESOURCE_RE = re.compile(
    r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?\.[a-z]+/[a-z0-9][a-z0-9._-]*$"
)

# Ports the nginx containers listen on inside their pods: unprivileged, so nginx runs
# as a non-root user without NET_BIND_SERVICE. Services map 443/80 onto them.
EDGE_CONTAINER_HTTPS_PORT = 8443
EDGE_CONTAINER_HTTP_PORT = 8880


def _label(value: str) -> str:
    if not _LABEL_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes name (lowercase a-z, 0-9, '-')")
    return value


def _subdomain(value: str) -> str:
    if not _SUBDOMAIN_RE.match(value):
        raise ValueError(f"{value!r} is not a DNS name (lowercase a-z, 0-9, '-', '.')")
    return value


def _quantity(value: str) -> str:
    if not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a storage size like '100Gi'")
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, item in value.items():
        if not _LABEL_KEY_RE.match(key):
            raise ValueError(f"{key!r} is not a label key")
        if not _LABEL_VALUE_RE.match(item):
            raise ValueError(f"{item!r} (label {key}) is not a label value")
    return value


def _ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address") from exc
    return value


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR like 203.0.113.0/24") from exc
    return value


Name = Annotated[str, AfterValidator(_label)]
DnsName = Annotated[str, AfterValidator(_subdomain)]
Quantity = Annotated[str, AfterValidator(_quantity)]
Labels = Annotated[dict[str, str], AfterValidator(_labels)]
Cidr = Annotated[str, AfterValidator(_cidr)]


class TolerationConfig(Section):
    """A toleration for the taint GPU nodes usually carry (`nvidia.com/gpu:NoSchedule`)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TolerationConfig:
        if self.operator == "Equal" and (self.key is None or self.value is None):
            raise ValueError("a toleration with operator Equal needs a key and a value")
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("a toleration with operator Exists takes no value")
        return self


class GpuConfig(Section):
    """How Ollama pods get their GPU: one device per pod from the device plugin."""

    # false: CPU-only pods (a test cluster without GPUs).
    enabled: bool = True
    resource: str = Field("nvidia.com/gpu", pattern=_EXTENDED_RESOURCE_RE.pattern)
    node_selector: Labels = Field(default_factory=dict)
    tolerations: list[TolerationConfig] = Field(
        default_factory=lambda: [
            TolerationConfig(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
        ]
    )


class ModelStorageConfig(Section):
    """Where the models live: a volume per pod, or one ReadWriteMany claim for all."""

    size: Quantity = "100Gi"
    storage_class: DnsName | None = None
    # false: each pod has its own ReadWriteOnce volume and pulls into it (init
    # container); true: one ReadWriteMany claim, pulled once by a Job before the pods
    # start (the storage class must support ReadWriteMany).
    shared: bool = False


class GatewayRefConfig(Section):
    """The existing Gateway API `Gateway` the HTTPRoute attaches to."""

    name: Name
    namespace: Name | None = None
    section_name: Name | None = None


class ExposeConfig(Section):
    """How clients reach the edge from outside the cluster."""

    type: Literal["load-balancer", "http-route"] = "load-balancer"
    # load-balancer: the client ranges allowed in (empty: everyone), Service annotations
    # (cloud load balancer settings).
    source_ranges: list[Cidr] = Field(default_factory=list)
    annotations: dict[str, str] = Field(default_factory=dict)
    # http-route: the Gateway it attaches to. The route sends traffic to the edge's TLS
    # port and a BackendTLSPolicy tells the Gateway to verify the edge's certificate.
    gateway: GatewayRefConfig | None = None


class KedaConfig(Section):
    """KEDA is installed: scale the gateway on its queue depth as well as on CPU."""

    # Where KEDA's operator runs (the NetworkPolicy lets it query our Prometheus).
    namespace: Name = "keda"
    # The Prometheus KEDA queries; default: the stack's own Prometheus.
    prometheus_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    # Queued requests per gateway replica before another replica is added.
    queue_depth_per_replica: int = Field(8, ge=1)


class AutoscalingConfig(Section):
    """The gateway's HorizontalPodAutoscaler (gateway.replicas is its minimum)."""

    max_replicas: int = Field(4, ge=1, le=100)
    target_cpu_percent: int = Field(70, ge=10, le=100)
    keda: KedaConfig | None = None


class PrometheusOperatorConfig(Section):
    """Use an existing Prometheus Operator (kube-prometheus-stack) instead of our own."""

    # Where that Prometheus runs: the NetworkPolicies let it scrape from there.
    namespace: Name = "monitoring"
    # Labels its serviceMonitorSelector / ruleSelector match (the Helm release name).
    labels: Labels = Field(default_factory=lambda: {"release": "kube-prometheus-stack"})


class CertManagerConfig(Section):
    """The issuer of the edge certificate when `edge.tls: cert-manager`."""

    issuer_name: Name
    issuer_kind: Literal["Issuer", "ClusterIssuer"] = "ClusterIssuer"


class KubernetesConfig(Section):
    """A cluster to deploy on (`platform: kubernetes`)."""

    # Default: the stack's namePrefix.
    namespace: Name | None = None
    # false: the namespace exists already (made by a cluster admin).
    create_namespace: bool = True
    # The gateway image, built from gateway/Dockerfile and pushed where the cluster pulls.
    gateway_image: PinnedImage
    # The cluster DNS Service's IP (kubectl -n kube-system get service kube-dns): nginx
    # re-resolves pod names through it, as they change when pods are replaced.
    dns_resolver: Annotated[str, AfterValidator(_ip)]
    cluster_domain: DnsName = "cluster.local"
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    models: ModelStorageConfig = Field(default_factory=ModelStorageConfig)
    # Persistent volumes of Redis and Prometheus (storage class: the cluster default).
    storage_class: DnsName | None = None
    redis_storage: Quantity = "8Gi"
    prometheus_storage: Quantity = "50Gi"
    edge_replicas: int = Field(2, ge=1, le=16)
    expose: ExposeConfig = Field(default_factory=ExposeConfig)
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    # Set: ServiceMonitors and a PrometheusRule for that operator, no Prometheus of ours.
    prometheus_operator: PrometheusOperatorConfig | None = None
    cert_manager: CertManagerConfig | None = None

    @property
    def uses_gpus(self) -> bool:
        return self.gpu.enabled


def platform_problems(config: StackConfig) -> list[str]:
    """Why this config cannot deploy on its platform (empty when it can)."""
    kube = config.kubernetes
    if config.platform == "docker":
        problems = []
        if kube is not None:
            problems.append(
                "kubernetes: only read with platform: kubernetes; remove it, or set "
                "platform: kubernetes"
            )
        if config.edge.tls == "cert-manager":
            problems.append("edge.tls: cert-manager needs platform: kubernetes")
        return problems
    if kube is None:
        return [
            "platform: kubernetes needs a `kubernetes` section (at least gatewayImage and "
            "dnsResolver)"
        ]
    problems = []
    if config.ollama.gpus:
        problems.append(
            "ollama.gpus: on Kubernetes the device plugin picks each pod's GPU; leave gpus "
            "empty and set kubernetes.gpu (enabled, resource, nodeSelector, tolerations)"
        )
    if config.edge.tls == "cert-manager" and kube.cert_manager is None:
        problems.append("edge.tls: cert-manager needs kubernetes.certManager.issuerName")
    if kube.cert_manager is not None and config.edge.tls != "cert-manager":
        problems.append("kubernetes.certManager: only used with edge.tls: cert-manager")
    if kube.expose.type == "http-route" and kube.expose.gateway is None:
        problems.append("kubernetes.expose: type http-route needs gateway.name")
    if kube.expose.type == "http-route" and (kube.expose.source_ranges or kube.expose.annotations):
        problems.append(
            "kubernetes.expose: sourceRanges and annotations are for a load-balancer; "
            "an http-route's Gateway decides who reaches it"
        )
    if kube.expose.type == "load-balancer" and kube.expose.gateway is not None:
        problems.append("kubernetes.expose: gateway is only used with type http-route")
    if kube.autoscaling.max_replicas < config.gateway.replicas:
        problems.append(
            f"kubernetes.autoscaling.maxReplicas ({kube.autoscaling.max_replicas}) is below "
            f"gateway.replicas ({config.gateway.replicas}), the autoscaler's minimum"
        )
    keda = kube.autoscaling.keda
    if keda is not None and kube.prometheus_operator is not None and keda.prometheus_url is None:
        problems.append(
            "kubernetes.autoscaling.keda.prometheusUrl: needed with prometheusOperator "
            "(the stack runs no Prometheus of its own for KEDA to query)"
        )
    if config.monitoring.grafana.enabled:
        problems.append(
            "monitoring.grafana.enabled: the Kubernetes platform deploys no Grafana; its "
            "dashboards are ConfigMaps for your cluster's Grafana (label grafana_dashboard). "
            "Set monitoring.grafana.enabled: false"
        )
    taken = {EDGE_CONTAINER_HTTPS_PORT, EDGE_CONTAINER_HTTP_PORT}
    for key, port in (
        ("balancer.port", config.balancer.port),
        ("balancer.statusPort", config.balancer.status_port),
    ):
        if port in taken:
            problems.append(f"{key}: {port} is an edge container port on Kubernetes; pick another")
    return problems
