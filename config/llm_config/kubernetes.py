"""The `kubernetes` section: what a cluster needs beyond the platform-neutral config.

Read only when `platform: kubernetes`. The kube context itself is not here: it is the
`kubernetes:` provider's own config (`pulumi config set kubernetes:context <name>`).
The combinations that cannot deploy (`llm_config.platforms`) are refused with the
rest of the config, before any resource exists.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from llm_config.fields import PinnedImage, Section

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
