"""The typed stack configuration: one object, validated before any resource exists.

Every section maps to one `llm-stack:<section>` key of a `Pulumi.<stack>.yaml` file
(camelCase there, snake_case here). Unknown keys are errors, so a typo never turns
silently into a default. Secrets are not part of this model: they stay Pulumi
secrets (see `secrets.py`) and never pass through plain Python strings in the
program.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, model_validator

from llm_config import images
from llm_config.fields import (
    Duration,
    ModelName,
    PinnedImage,
    Port,
    _pinned_image,
)
from llm_config.fields import Section as _Section
from llm_config.kubernetes import (
    EDGE_CONTAINER_HTTP_PORT,
    EDGE_CONTAINER_HTTPS_PORT,
    KubernetesConfig,
)

__all__ = ["_pinned_image"]


class OllamaConfig(_Section):
    """The Ollama pool: N instances, each on its own GPU (or all CPU-only)."""

    image: PinnedImage = images.OLLAMA
    instances: int = Field(1, ge=1, le=16)
    # GPU device ids or UUIDs, one per instance; empty means CPU-only.
    gpus: list[str] = Field(default_factory=list)
    models: list[ModelName] = Field(min_length=1)
    keep_alive: Duration = "5m"
    num_parallel: int = Field(1, ge=1, le=64)
    max_queue: int = Field(512, ge=1)
    max_loaded_models: int = Field(1, ge=1, le=16)
    memory_mb: int | None = Field(None, ge=512)
    # Seconds a model load may take before the healthcheck gives up on the instance.
    start_period_seconds: int = Field(120, ge=0)
    # The context length every model is served with (OLLAMA_CONTEXT_LENGTH). With the
    # gateway removing runner options from requests (gateway.runnerOptions: strip), it
    # is the one runner shape per model: /api and /v1 clients never force a reload.
    context_length: int | None = Field(None, ge=256, le=1048576)
    # GPU memory of one instance, in GB: lets the model-aware router tell whether a
    # model can load beside the ones already loaded. Unset: it counts models only
    # (maxLoadedModels) and learns sizes from /api/ps.
    vram_gb: float | None = Field(None, gt=0, le=4096)

    @model_validator(mode="after")
    def _gpus_match_instances(self) -> OllamaConfig:
        if not self.gpus:
            return self
        if len(set(self.gpus)) != len(self.gpus):
            dupes = sorted({g for g in self.gpus if self.gpus.count(g) > 1})
            raise ValueError(f"gpus: duplicate GPU ids {dupes}; each instance needs its own GPU")
        if len(self.gpus) != self.instances:
            raise ValueError(
                f"gpus: {len(self.gpus)} GPU ids for {self.instances} instances; "
                "give exactly one GPU id per instance, or none for CPU-only"
            )
        return self

    @property
    def uses_gpus(self) -> bool:
        return bool(self.gpus)


class TimeoutsConfig(_Section):
    """Upstream timeouts of the gateway, each bounding a different phase."""

    connect_seconds: float = Field(5.0, gt=0)
    # Generous: a cold model load takes tens of seconds before the first token.
    first_byte_seconds: float = Field(120.0, gt=0)
    idle_seconds: float = Field(60.0, gt=0)
    total_seconds: float = Field(900.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> TimeoutsConfig:
        if self.total_seconds < self.first_byte_seconds:
            raise ValueError("timeouts: totalSeconds must be >= firstByteSeconds")
        return self


class QueueConfig(_Section):
    """The gateway's admission queue (model-aware routing): fair per key, by priority."""

    # Requests waiting for a slot in one gateway replica; above it, 503 at once.
    max_depth: int = Field(1000, ge=1, le=100000)
    # How long a request may wait for a slot unless its key or header says less.
    deadline_seconds: float = Field(120.0, gt=0, le=3600)
    # How long requests for a model that is loaded nowhere may wait before the router
    # evicts a busy model for it (it stops feeding that instance, then loads).
    load_patience_seconds: float = Field(20.0, ge=0, le=3600)
    # Requests a key that used less than its fair share may send ahead of a key that
    # floods (has more than this many waiting), when it bursts (credit it banked while
    # the others were served more).
    # 0: plain start-time fair queueing, an even split from the first request.
    burst: float = Field(12.0, ge=0, le=10000)


class QuotaConfig(_Section):
    """Token quotas of keys that do not set their own (`apiKeys.<name>.tokensPerMinute`)."""

    tokens_per_minute: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1)
    # A request that does not say how long its answer may be (num_predict, max_tokens)
    # is charged this many completion tokens at admission, settled when it ends.
    estimate_tokens: int = Field(256, ge=1)
    # Cache hits and coalesced followers cost no tokens unless this is true.
    hits_cost_tokens: bool = False


class TracingConfig(_Section):
    """OpenTelemetry traces of the gateway, sent over OTLP/HTTP (headers: the secret
    `otelHeaders`, e.g. an API key of your tracing backend)."""

    enabled: bool = False
    # The collector's OTLP/HTTP base URL (spans go to <endpoint>/v1/traces).
    endpoint: str | None = Field(None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    sampling_ratio: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _endpoint_when_enabled(self) -> TracingConfig:
        if self.enabled and not self.endpoint:
            raise ValueError("tracing: enabled needs an endpoint (the collector's OTLP/HTTP URL)")
        return self


class SemanticCacheConfig(_Section):
    """A rephrased question answered from the cache (docs/semantic-cache.md). Off by
    default; when on, for the `models` listed (empty: every model) and for the keys
    whose entry in the keys file says `semanticCache: true`."""

    enabled: bool = False
    # An embedding model the stack pulls (listed in ollama.models).
    embed_model: ModelName = "all-minilm"
    # Cosine similarity a paraphrase must reach (guards decide the rest): 0.85 gives 0
    # false hits on the project's labelled set (bench/semantic/results.md).
    threshold: float = Field(0.85, ge=0.5, le=1)
    models: list[ModelName] = Field(default_factory=list)
    # An embedding slower than this is a miss (it never holds a request longer).
    embed_timeout_seconds: float = Field(0.5, gt=0, le=30)


class GatewayConfig(_Section):
    replicas: int = Field(1, ge=1, le=16)
    # least-conn: every request to the nginx balancer (least_conn, blind to models);
    # model-aware: the gateway routes to the instance that has the model loaded and a
    # free slot, and queues fairly when none has.
    routing: Literal["model-aware", "least-conn"] = "model-aware"
    queue: QueueConfig = Field(default_factory=QueueConfig)
    # How often each Ollama's /api/ps is read (model-aware routing).
    poll_seconds: float = Field(1.5, gt=0, le=60)
    # Replicas share what they have in flight and waiting through Redis (model-aware
    # routing): together they take no more than each instance's slots, in priority order.
    share_in_flight: bool = True
    # Prefix affinity (model-aware routing): a request that can start now goes to the
    # instance likely to hold its prompt's prefix in its KV/prompt caches (a chat's
    # follow-up, a shared system prompt), unless that puts the instance more than
    # `affinity_load_share` x the mean load. With `affinity_wait`, a request whose
    # holder is busy waits for it only when a slot there is expected to free before the
    # prefill it would pay elsewhere is done (its sooner first token), never longer.
    prefix_affinity: bool = True
    affinity_load_share: float = Field(1.25, ge=1.0, le=10.0)
    affinity_wait: bool = True
    # strip: runner options that force a reload (num_ctx, num_batch, num_gpu, main_gpu,
    # use_mmap, num_thread) are removed from requests; pass: sent on as clients wrote them.
    runner_options: Literal["strip", "pass"] = "strip"
    quotas: QuotaConfig = Field(default_factory=QuotaConfig)
    # Usage per key, model and day is kept this long in Redis (0: not kept).
    usage_retention_days: int = Field(90, ge=0, le=3650)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    workers: int = Field(1, ge=1, le=64)
    port: Port = 8000
    cache_mode: Literal["deterministic", "all", "off"] = "deterministic"
    cache_ttl_seconds: int = Field(3600, ge=1)
    cache_stale_seconds: int = Field(86400, ge=0)
    # Who shares a cache entry: each key alone (key), the keys of one `cacheGroup` of
    # apiKeys (group), or every key (shared: a hit then tells any key that another one
    # sent the same request).
    cache_scope: Literal["key", "group", "shared"] = "key"
    # A bigger answer is relayed, never stored in the cache.
    cache_max_entry_bytes: int = Field(1024 * 1024, ge=1024)
    # Inputs of one embedding request (each is a vector in the answer).
    max_embed_inputs: int = Field(2048, ge=1)
    # A request's keep_alive is clamped to this range; unload-only requests
    # (keep_alive 0 and nothing to generate) are for admin keys.
    keep_alive_min_seconds: float = Field(60.0, ge=0)
    keep_alive_max_seconds: float = Field(3600.0, gt=0)
    semantic_cache: SemanticCacheConfig = Field(default_factory=SemanticCacheConfig)
    # Defaults for keys that do not set their own limits.
    requests_per_minute: int = Field(600, ge=1)
    max_concurrent_per_key: int = Field(16, ge=1)
    limits_fail_closed: bool = False
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    log_prompts: bool = False
    memory_mb: int | None = Field(None, ge=64)

    @model_validator(mode="after")
    def _keep_alive_range(self) -> GatewayConfig:
        if self.keep_alive_min_seconds > self.keep_alive_max_seconds:
            raise ValueError("keepAliveMinSeconds must not exceed keepAliveMaxSeconds")
        return self


class EdgeConfig(_Section):
    """The TLS edge: the only published entry to the stack."""

    # The one nginx container: TLS edge and the internal least_conn balancer.
    image: PinnedImage = images.NGINX
    hostname: str = "localhost"
    bind_address: str = "127.0.0.1"
    https_port: Port = 443
    http_port: Port = 80
    # self-signed: generated and kept in state; provided: tlsCert + secret tlsKey;
    # cert-manager (Kubernetes only): a Certificate from kubernetes.certManager's issuer.
    tls: Literal["self-signed", "provided", "cert-manager"] = "self-signed"
    rate_limit_per_second: int = Field(10, ge=1)
    rate_limit_burst: int = Field(20, ge=0)
    max_body_mb: int = Field(10, ge=1, le=1024)
    # Slow generations stream for minutes: never below 120 s.
    read_timeout_seconds: int = Field(300, ge=120)
    hsts_max_age_seconds: int = Field(31536000, ge=0)

    @model_validator(mode="after")
    def _valid_bind(self) -> EdgeConfig:
        try:
            ipaddress.ip_address(self.bind_address)
        except ValueError as exc:
            raise ValueError(f"bindAddress: {self.bind_address!r} is not an IP address") from exc
        if self.https_port == self.http_port:
            raise ValueError("httpsPort and httpPort must differ")
        return self

    @property
    def url(self) -> str:
        """Where clients reach the stack (the `gatewayUrl` output)."""
        suffix = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{self.hostname}{suffix}"


class BalancerConfig(_Section):
    """The internal nginx least_conn balancer in front of the Ollama instances."""

    port: Port = 8080
    status_port: Port = 8081
    max_fails: int = Field(2, ge=0)
    fail_timeout_seconds: int = Field(10, ge=1)
    keepalive_connections: int = Field(32, ge=1)
    read_timeout_seconds: int = Field(600, ge=120)
    connect_timeout_seconds: int = Field(5, ge=1)


class RedisStateConfig(_Section):
    """The state Redis: limits, quota debts, usage, routing state. Never evicts.

    `noeviction`: when it is full, writes fail (the gateway then serves as
    `gateway.limitsFailClosed` says) and nothing already counted is lost. Usage is
    about 2 KB per key and day kept (`gateway.usageRetentionDays`); limits and routing
    state are a few hundred bytes per key and instance.
    """

    maxmemory_mb: int = Field(256, ge=16)


class RedisConfig(_Section):
    """Two Redis servers from one image: the response cache and the state (`state`).

    The top-level sizes are the cache's: it evicts what was least recently used when
    full, and cannot reach the state, which lives in its own server.
    """

    image: PinnedImage = images.REDIS
    maxmemory_mb: int = Field(512, ge=16)
    eviction_policy: Literal["allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu"] = (
        "allkeys-lru"
    )
    # The cache's append-only file (warm after a restart); the state's is always on.
    appendonly: bool = True
    state: RedisStateConfig = Field(default_factory=RedisStateConfig)


class GrafanaConfig(_Section):
    enabled: bool = True
    image: PinnedImage = images.GRAFANA
    bind_address: str = "127.0.0.1"
    port: Port = 3000


class AlertsConfig(_Section):
    """Thresholds of the Prometheus alert rules."""

    error_ratio: float = Field(0.05, gt=0, lt=1)
    p95_latency_seconds: float = Field(30.0, gt=0)
    # Alert when the hit ratio falls below this fraction of its value a day earlier.
    cache_hit_ratio_drop: float = Field(0.5, gt=0, lt=1)
    for_minutes: int = Field(5, ge=1)
    # Ratio alerts (errors, latency, cache, shedding) stay quiet below this many requests
    # in their window: one failure out of three requests is noise, not an incident.
    min_requests: int = Field(10, ge=1)
    # Model-aware routing only. Alert when more than this share of the requests that
    # needed a model was shed (503 before reaching Ollama) over 10 minutes.
    shed_ratio: float = Field(0.05, gt=0, lt=1)
    # Alert when one Ollama instance loads models more often than this per hour: models
    # evicting each other (thrash), each load a cold start of seconds to minutes.
    model_loads_per_hour: int = Field(20, ge=1)


class MonitoringConfig(_Section):
    prometheus_image: PinnedImage = images.PROMETHEUS
    retention: str = Field("15d", pattern=r"^[0-9]+(?:ms|s|m|h|d|w|y)$")
    scrape_interval_seconds: int = Field(15, ge=1, le=300)
    nginx_exporter_image: PinnedImage = images.NGINX_EXPORTER
    gpu_exporter_image: PinnedImage = images.DCGM_EXPORTER
    grafana: GrafanaConfig = Field(default_factory=GrafanaConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)


class NetworkConfig(_Section):
    # Fixed so that nginx can allow exactly the internal network on internal ports.
    internal_subnet: str = "172.28.0.0/24"

    @model_validator(mode="after")
    def _valid_subnet(self) -> NetworkConfig:
        try:
            net = ipaddress.ip_network(self.internal_subnet)
        except ValueError as exc:
            raise ValueError(f"internalSubnet: {self.internal_subnet!r} is not a CIDR") from exc
        if not net.is_private:
            raise ValueError(f"internalSubnet: {self.internal_subnet!r} must be a private range")
        return self


class StackConfig(_Section):
    """Everything a stack file says, checked as a whole."""

    environment: Literal["dev", "prod", "test"] = "dev"
    # Prefix of every container, network and volume name (the loader defaults it to
    # llm-<stack>, so two stacks on one Docker host never collide).
    name_prefix: str = Field("llm", pattern=r"^[a-z][a-z0-9-]{0,30}$")
    # docker: one host (pulumi-docker); kubernetes: a cluster (pulumi-kubernetes), set up
    # by the `kubernetes` section.
    platform: Literal["docker", "kubernetes"] = "docker"
    ollama: OllamaConfig
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    balancer: BalancerConfig = Field(default_factory=BalancerConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    kubernetes: KubernetesConfig | None = None

    @model_validator(mode="after")
    def _prod_rules(self) -> StackConfig:
        if self.environment == "prod" and self.edge.tls == "self-signed":
            raise ValueError("edge.tls: prod serves a provided certificate, not 'self-signed'")
        if self.balancer.port == self.balancer.status_port:
            raise ValueError("balancer.port and balancer.statusPort must differ")
        problems = platform_problems(self) + semantic_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def max_body_bytes(self) -> int:
        """One body cap for the whole path: the edge refuses first, the gateway agrees."""
        return self.edge.max_body_mb * 1024 * 1024


def _tagged(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def semantic_problems(config: StackConfig) -> list[str]:
    """The semantic cache asks for models the stack does not pull."""
    semantic = config.gateway.semantic_cache
    if not semantic.enabled:
        return []
    pulled = {_tagged(m) for m in config.ollama.models}
    problems = []
    if _tagged(semantic.embed_model) not in pulled:
        problems.append(
            f"gateway.semanticCache.embedModel: {semantic.embed_model!r} is not in "
            "ollama.models (the stack pulls the embedding model like the others)"
        )
    missing = [m for m in semantic.models if _tagged(m) not in pulled]
    if missing:
        problems.append(f"gateway.semanticCache.models: not in ollama.models: {missing}")
    return problems


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
    if (
        keda is not None
        and keda.queue_depth_per_replica is not None
        and kube.prometheus_operator is not None
        and keda.prometheus_url is None
    ):
        problems.append(
            "kubernetes.autoscaling.keda.prometheusUrl: needed with prometheusOperator "
            "(the stack runs no Prometheus of its own for KEDA to query)"
        )
    problems += kubernetes_problems(config)
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


def kubernetes_problems(config: StackConfig) -> list[str]:
    """The Kubernetes section against the rest: timeouts, grace periods, pins."""
    kube = config.kubernetes
    assert kube is not None
    problems = []
    total = config.gateway.timeouts.total_seconds
    route_timeout = kube.expose.route_timeout_seconds
    if route_timeout is not None and kube.expose.type != "http-route":
        problems.append("kubernetes.expose.routeTimeoutSeconds: only used with type http-route")
    elif route_timeout is not None and route_timeout < total:
        problems.append(
            f"kubernetes.expose.routeTimeoutSeconds ({route_timeout}) is below "
            f"gateway.timeouts.totalSeconds ({total:g}): the Gateway would cut generations "
            "the gateway still allows"
        )
    generation = kube.shutdown.generation_seconds or total
    if config.gateway.shutdown_grace_seconds < generation:
        problems.append(
            f"gateway.shutdownGraceSeconds ({config.gateway.shutdown_grace_seconds:g}) is "
            f"below the longest generation ({generation:g} s: kubernetes.shutdown."
            "generationSeconds, default gateway.timeouts.totalSeconds): every gateway "
            "rollout or scale-down would cut longer streams. Raise shutdownGraceSeconds "
            "or lower generationSeconds"
        )
    cold = sorted(set(kube.models.warm) - set(config.ollama.models))
    if cold:
        problems.append(
            f"kubernetes.models.warm: {', '.join(cold)} not in ollama.models "
            "(a pod can only load what it pulled)"
        )
    unknown = sorted(set(kube.models.digests) - set(config.ollama.models))
    if unknown:
        problems.append(
            f"kubernetes.models.digests: {', '.join(unknown)} not in ollama.models "
            "(pin the names exactly as listed there)"
        )
    return problems
