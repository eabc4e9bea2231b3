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
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
# An extended resource: a domain-prefixed name (nvidia.com/gpu, amd.com/gpu).
_EXTENDED_RESOURCE_RE = re.compile(
    r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?\.[a-z]+/[a-z0-9][a-z0-9._-]*$"
)

# Ports the nginx containers listen on inside their pods: unprivileged, so nginx runs
# as a non-root user without NET_BIND_SERVICE. Services map 443/80 onto them.
EDGE_CONTAINER_HTTPS_PORT = 8443
EDGE_CONTAINER_HTTP_PORT = 8880
# NodeLocal DNSCache's default link-local address: its pods run on the host network,
# which no namespace or pod selector matches, so DNS egress names it by address.
NODE_LOCAL_DNS = "169.254.20.10"
# Pod and Service ranges of most clusters (RFC 1918 and the shared 100.64/10): who may
# reach the balancer and status listeners, and whose X-Forwarded-For the edge trusts
# behind a Gateway, unless configured.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
PRIVATE_RANGES_V6 = ("fc00::/7",)


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


def _digest(value: str) -> str:
    bare = value.removeprefix("sha256:")
    if not _DIGEST_RE.match(bare):
        raise ValueError(f"{value!r} is not a sha256 digest (64 hex characters)")
    return bare


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
    # The GPU Operator (or GPU feature discovery) labels GPU nodes
    # `nvidia.com/gpu.present: "true"`; the device plugin alone does not, and the GPU
    # request already keeps the pods on GPU nodes. Empty: no selector.
    node_selector: Labels = Field(default_factory=dict)
    # The RuntimeClass that injects the GPU where nvidia is not the node's default
    # runtime (k3s, RKE2, some GPU Operator installs: `nvidia`). Unset: the default.
    runtime_class_name: Name | None = None
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
    # model -> the sha256 digest of its manifest (`/api/tags` digest; `ollama list`
    # shows its first 12 characters): a pull must end on exactly that digest, and a
    # model on the volume with it is never pulled again. Unpinned models already on the
    # volume are not pulled again either (a registry outage must not stop a pod).
    digests: dict[str, Annotated[str, AfterValidator(_digest)]] = Field(default_factory=dict)
    # Models each pod loads before it counts as started (Ollama is ready before any
    # model is loaded, so the first request for a model on a new pod waits for the
    # load): a postStart hook runs one short generation of each.
    warm: list[str] = Field(default_factory=list)


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
    # http-route: the route's request and backendRequest timeouts. Envoy Gateway cuts
    # any response at 15 s without them. Default: gateway.timeouts.totalSeconds + 60;
    # never below totalSeconds.
    route_timeout_seconds: int | None = Field(None, ge=1, le=86400)
    # Proxies whose X-Forwarded-For the edge believes (nginx set_real_ip_from), so that
    # its per-client rate limit and the logs see the client. Default: the private
    # ranges behind an http-route (the Gateway's proxies are pods), none behind a
    # load-balancer (externalTrafficPolicy Local keeps client addresses).
    trusted_proxies: list[Cidr] | None = None


class KedaConfig(Section):
    """KEDA is installed: it scales the gateway (on CPU; on queue depth if asked)."""

    # Where KEDA's operator runs (the NetworkPolicy lets it query our Prometheus).
    namespace: Name = "keda"
    # The Prometheus KEDA queries; default: the stack's own Prometheus.
    prometheus_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    # Queued requests per gateway replica before another replica is added. Unset (the
    # default): no queue trigger. A queue means every Ollama slot is busy; more
    # gateways add no GPU, and each later scale-down is a terminating pod.
    queue_depth_per_replica: int | None = Field(None, ge=1)


class AutoscalingConfig(Section):
    """The gateway's HorizontalPodAutoscaler (gateway.replicas is its minimum)."""

    max_replicas: int = Field(4, ge=1, le=100)
    target_cpu_percent: int = Field(70, ge=10, le=100)
    # The autoscaler scales down only after the load stayed low this long (the HPA's
    # behavior.scaleDown.stabilizationWindowSeconds): fewer terminating gateways.
    scale_down_stabilization_seconds: int = Field(600, ge=0, le=3600)
    keda: KedaConfig | None = None


class PrometheusOperatorConfig(Section):
    """Use an existing Prometheus Operator (kube-prometheus-stack) instead of our own."""

    # Where that Prometheus runs: the NetworkPolicies let it scrape from there.
    namespace: Name = "monitoring"
    # Labels its serviceMonitorSelector / ruleSelector match (the Helm release name).
    labels: Labels = Field(default_factory=lambda: {"release": "kube-prometheus-stack"})
    # Labels of its Prometheus pods (the operator sets app.kubernetes.io/name:
    # prometheus): only they may scrape, not every pod of that namespace (Grafana,
    # Alertmanager, ...). Empty: the whole namespace.
    pod_labels: Labels = Field(default_factory=lambda: {"app.kubernetes.io/name": "prometheus"})


class CertManagerConfig(Section):
    """The issuer of the edge certificate when `edge.tls: cert-manager`."""

    issuer_name: Name
    issuer_kind: Literal["Issuer", "ClusterIssuer"] = "ClusterIssuer"
    # The issuer's ACME challenge. http-01: cert-manager runs a solver pod in this
    # namespace (label acme.cert-manager.io/http01-solver=true, port 8089) and a
    # NetworkPolicy admits it. dns-01 (or a CA issuer): no solver pod here.
    challenge: Literal["http-01", "dns-01"] = "http-01"


class DnsConfig(Section):
    """Where pods send DNS queries: what the DNS egress NetworkPolicy allows."""

    # The cluster DNS pods (kube-system; openshift-dns on OpenShift) and, optionally,
    # their labels (e.g. k8s-app: kube-dns; empty: any pod of that namespace).
    namespace: Name = "kube-system"
    pod_labels: Labels = Field(default_factory=dict)
    # Ports as the policy sees them, after the Service's DNAT (OpenShift: 5353).
    ports: list[int] = Field(default_factory=lambda: [53], min_length=1)
    # Addresses outside any pod selector: NodeLocal DNSCache (host network) and the DNS
    # Service IP it also binds. Default: dnsResolver and 169.254.20.10.
    cidrs: list[Cidr] | None = None

    @model_validator(mode="after")
    def _ports(self) -> DnsConfig:
        for port in self.ports:
            if not 1 <= port <= 65535:
                raise ValueError(f"dns.ports: {port} is not a port")
        return self


class TraceCollectorConfig(Section):
    """Where the gateway's OTLP collector runs: its egress NetworkPolicy (with tracing)."""

    # A collector in the cluster (namespace and its pods' labels), or addresses outside.
    # Nothing set: any destination on the endpoint's port.
    namespace: Name | None = None
    pod_labels: Labels = Field(default_factory=dict)
    cidrs: list[Cidr] = Field(default_factory=list)


class ShutdownConfig(Section):
    """How long terminating pods keep serving: sized to the longest generation."""

    # A terminating pod lets generations this long finish (Ollama pods drain through
    # the gateway first; gateways and the edge finish what they carry). Default:
    # gateway.timeouts.totalSeconds, the longest a request may take anyway.
    generation_seconds: int | None = Field(None, ge=10, le=7200)
    # How long a terminating edge pod keeps accepting while the load balancer or the
    # Gateway drops it from its endpoints.
    edge_pre_stop_seconds: int = Field(20, ge=5, le=300)


class DrainConfig(Section):
    """Ollama pods drain through the gateway before they stop."""

    # false: no drain; a stopping Ollama pod cuts its streams (Ollama closes at once).
    enabled: bool = True
    # The drain sidecar's image: the gateway image (it carries `llm-gateway drain`).
    # Default: kubernetes.gatewayImage.
    image: PinnedImage | None = None


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
    dns: DnsConfig = Field(default_factory=DnsConfig)
    trace_collector: TraceCollectorConfig = Field(default_factory=TraceCollectorConfig)
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig)
    drain: DrainConfig = Field(default_factory=DrainConfig)
    # Tries the edge gives one request across gateway replicas (proxy_next_upstream_tries):
    # the gateways are one Service name, so the replica count does not say it.
    edge_gateway_tries: int = Field(3, ge=2, le=16)
    # true: pods listen on IPv6 as well (nginx [::], Ollama and the gateway on ::), the
    # edge resolves AAAA records, and pulls may use IPv6 (dual-stack clusters).
    ipv6: bool = False
    # The cluster's pod addresses: who may use the balancer and nginx's status port,
    # and, behind an http-route, whose X-Forwarded-For the edge believes by default.
    # Default: the private ranges (and fc00::/7 with ipv6); an IPv6 cluster whose pods
    # have global addresses lists its pod CIDRs here.
    pod_cidrs: list[Cidr] | None = None

    @property
    def pod_ranges(self) -> tuple[str, ...]:
        if self.pod_cidrs is not None:
            return tuple(self.pod_cidrs)
        return PRIVATE_RANGES + (PRIVATE_RANGES_V6 if self.ipv6 else ())

    @property
    def uses_gpus(self) -> bool:
        return self.gpu.enabled
