"""Prometheus alert rules, thresholds from `config.monitoring.alerts`.

Written for the person paged at 2 AM: the summary says what broke, the description
what users see and where to look first. Ratio alerts are guarded by a traffic floor
(`alerts.minRequests`): a ratio over three requests is noise, not an incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_config.model import StackConfig

from llm_monitoring import promql, yamltext
from llm_monitoring.dashboards import overview_title, upstream_path
from llm_monitoring.jobs import BY_STACK, GATEWAY_JOB, NGINX_JOB, OLLAMA_INSTANCE, selector

GROUP_NAME = "llm-stack"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    summary: str
    description: str

    def rule(self, for_minutes: int) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": f"{for_minutes}m",
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "description": self.description},
        }


def _gateway_alerts(config: StackConfig) -> list[Alert]:
    prefix = config.name_prefix
    replicas = config.gateway.replicas
    up = f"up{selector(GATEWAY_JOB)}"
    look = (
        f"Look: `docker ps -a --filter name={prefix}-gateway` (restarts, exit code), "
        "`docker logs <container>`; /metrics needs neither Redis nor Ollama, so a failed "
        "scrape means the process itself is down, stuck or unreachable."
    )
    alerts = [
        Alert(
            "LLMGatewayDown",
            # `absent` catches a scrape config that lost the gateway job altogether.
            f"{promql.sum_by(BY_STACK, up)} == 0\nor\nabsent({up})",
            "critical",
            f"No gateway replica of {prefix} is up: the LLM API is down",
            "Prometheus cannot scrape any of the "
            f"{replicas} gateway replica(s). Every client request through the edge fails "
            f"(nginx answers 502). {look}",
        )
    ]
    if replicas > 1:
        alerts.append(
            Alert(
                "LLMGatewayReplicaDown",
                f"{up} == 0",
                "warning",
                "Gateway replica {{ $labels.instance }} is down",
                "Prometheus cannot scrape the gateway at {{ $labels.instance }}. The edge "
                f"sends traffic to the other {replicas - 1} replica(s), so users see at "
                f"most a blip, but capacity is reduced. {look}",
            )
        )
    return alerts


def _upstream_alerts(config: StackConfig) -> list[Alert]:
    prefix = config.name_prefix
    health = f"llm_upstream_up{selector(GATEWAY_JOB)}"
    logs = (
        "the gateway's log"
        if config.gateway.routing == "model-aware"
        else "the balancer's error log"
    )
    return [
        Alert(
            "LLMUpstreamDown",
            # max over replicas: one replica that still reaches Ollama means it is up.
            f"max by ({BY_STACK}) ({health}) == 0",
            "critical",
            "No Ollama instance is reachable: uncached LLM requests fail",
            "Every gateway replica's probe of the upstream (/api/tags "
            f"{upstream_path(config)}) fails, so no Ollama instance answers. Clients get "
            "502/503/504 except for answers still in the cache. Look: `docker ps -a --filter "
            f"name={prefix}-ollama` (health, restarts, OOM kills), {logs}, and "
            f"'Errors by reason' on the '{overview_title(config)}' "
            "dashboard (connect = instances down, timeout = overloaded or loading a model).",
        ),
        Alert(
            "LLMUpstreamHealthUnknown",
            f"absent({health})\nand on ()\n{promql.sum_by('', f'up{selector(GATEWAY_JOB)}')} > 0",
            "warning",
            "Gateways are up but report no upstream health (llm_upstream_up missing)",
            "The gateway's /metrics has no llm_upstream_up series, so LLMUpstreamDown "
            "cannot fire. A gateway build without the upstream probe, or a renamed "
            "metric: check the gateway version (llm_gateway_build_info) and its /metrics.",
        ),
    ]


def _traffic_floor(config: StackConfig, metric: str, *matchers: str) -> str:
    window = promql.alert_window(config)
    requests = promql.gateway_increase(metric, window, BY_STACK, *matchers)
    return f"and on ({BY_STACK})\n{requests} >= {config.monitoring.alerts.min_requests}"


def _quality_alerts(config: StackConfig) -> list[Alert]:
    alerts_cfg = config.monitoring.alerts
    window = promql.alert_window(config)
    floor = alerts_cfg.min_requests
    error_ratio = promql.error_ratio(window, BY_STACK)
    p95 = promql.histogram_quantile(
        0.95, "llm_request_duration_seconds", window, BY_STACK, promql.NOT_FROM_CACHE
    )
    title = overview_title(config)
    return [
        Alert(
            "LLMHighErrorRatio",
            f"(\n{error_ratio}\n) > {alerts_cfg.error_ratio}\n"
            + _traffic_floor(config, "llm_requests_total"),
            "critical",
            "{{ $value | humanizePercentage }} of LLM requests fail with 5xx",
            f"More than {alerts_cfg.error_ratio:.0%} of requests answered 5xx over "
            f"{window} (at least {floor} requests). Look at 'Errors by reason' on the "
            f"'{title}' dashboard: llm_upstream_errors_total by reason tells connect "
            "(Ollama or the balancer down), timeout (overloaded, a model loading, the "
            "queue full) and status (Ollama itself answered 5xx) apart.",
        ),
        Alert(
            "LLMHighLatencyP95",
            # Cache hits answer in a millisecond: counting them would let a rising hit
            # ratio hide slow generations, and a falling one fake a slowdown.
            f"{p95} > {alerts_cfg.p95_latency_seconds:g}\n"
            + _traffic_floor(config, "llm_request_duration_seconds_count", promql.NOT_FROM_CACHE),
            "warning",
            "p95 latency of model-served requests is {{ $value | humanizeDuration }}",
            "The 95th percentile of request duration (request to last byte, cache hits "
            f"and stale serves excluded) exceeds {alerts_cfg.p95_latency_seconds:g}s over "
            f"{window}. Long streamed generations count in full, so check 'Time to first "
            f"token' and 'Tokens/s' on the '{title}' dashboard: a slow first token means "
            "queueing or model loads (too few instances, numParallel, keepAlive), slow "
            "tokens/s means the GPUs are saturated or a model fell back to CPU.",
        ),
    ]


def _cache_alerts(config: StackConfig) -> list[Alert]:
    if config.gateway.cache_mode == "off":
        return []  # nothing is cached, so there is no hit ratio to watch
    alerts_cfg = config.monitoring.alerts
    window = promql.alert_window(config)
    now = promql.cache_hit_ratio(window, BY_STACK)
    day_ago = promql.cache_hit_ratio(window, BY_STACK, offset="1d")
    floor = alerts_cfg.min_requests
    traffic_now = promql.cacheable_requests(window, BY_STACK)
    traffic_day_ago = promql.cacheable_requests(window, BY_STACK, offset="1d")
    return [
        Alert(
            "LLMCacheHitRatioCollapse",
            f"(\n{now}\n)\n< {alerts_cfg.cache_hit_ratio_drop:g} * (\n{day_ago}\n)\n"
            # Both windows need real cacheable traffic, or one request decides the ratio.
            f"and on ({BY_STACK})\n{traffic_now} >= {floor}\n"
            f"and on ({BY_STACK})\n{traffic_day_ago} >= {floor}",
            "warning",
            "Cache hit ratio fell to {{ $value | humanizePercentage }}",
            f"The hit ratio over {window} is below {alerts_cfg.cache_hit_ratio_drop:.0%} of "
            "its value at the same time a day earlier: more requests reach Ollama. Look: "
            "Redis errors (LLMRedisUnreachable, 'Redis errors' panel), Redis memory and "
            f"evictions (`docker exec -it {config.name_prefix}-redis redis-cli`, AUTH with "
            "the stack's redisPassword, then INFO stats / INFO memory), "
            "a gateway deploy that changed the cache key or mode, or clients that stopped "
            "sending deterministic requests (temperature 0 / fixed seed).",
        )
    ]


def _redis_alerts(config: StackConfig) -> list[Alert]:
    fail_closed = config.gateway.limits_fail_closed
    errors = promql.gateway_rate("llm_redis_errors_total", promql.short_window(config), BY_STACK)
    effect = (
        "rate limits fail closed (limitsFailClosed), so requests are being refused"
        if fail_closed
        else "requests still succeed, but uncached (all go to Ollama) and rate limits "
        "are not enforced (limitsFailClosed is off)"
    )
    return [
        Alert(
            "LLMRedisUnreachable",
            f"{errors} > 0",
            "critical" if fail_closed else "warning",
            'Gateway cannot use Redis ({{ $value | printf "%.2f" }} errors/s)',
            f"Redis calls of the gateway keep failing or timing out: {effect}. Look: "
            f"`docker ps -a --filter name={config.name_prefix}-redis` (the state server "
            "and the cache's), their logs (AOF rewrite stalls; OOM on the state server "
            "means it is full: it never evicts, so raise redis.state.maxmemoryMb or lower "
            "gateway.usageRetentionDays), and 'Redis errors' by operation on the "
            f"'{overview_title(config)}' dashboard.",
        )
    ]


def _routing_alerts(config: StackConfig) -> list[Alert]:
    if config.gateway.routing != "model-aware":
        return []  # only the model-aware router queues, sheds and watches instances
    alerts_cfg = config.monitoring.alerts
    prefix = config.name_prefix
    title = overview_title(config)
    window = promql.shed_window(config)
    floor = alerts_cfg.min_requests
    instances = config.ollama.instances
    alerts = [
        Alert(
            "LLMRequestsShed",
            f"(\n{promql.shed_ratio(window, BY_STACK)}\n) > {alerts_cfg.shed_ratio:g}\n"
            f"and on ({BY_STACK})\n{promql.queued_requests(window, BY_STACK)} >= {floor}",
            "warning",
            "{{ $value | humanizePercentage }} of requests that needed a model are shed (503)",
            f"Over {window}, more than {alerts_cfg.shed_ratio:.0%} of the requests that "
            f"needed a model (at least {floor} of them) were refused with 503 before "
            "reaching Ollama: the instances cannot keep up with the traffic. Clients get "
            "503 with Retry-After; these 503s also count in the 5xx ratio. Look at the "
            f"Routing row of the '{title}' dashboard: shed by reason (queue_full: the "
            "queue is at gateway.queue.maxDepth; overloaded or deadline: waits longer "
            "than the deadline), queue depth and wait per model, instances up, model "
            "loads. Fixes: more Ollama instances, a larger numParallel where the GPUs have "
            "headroom, fewer models competing for the GPUs.",
        ),
        Alert(
            "LLMModelThrash",
            f"{promql.model_loads('1h', f'{BY_STACK}, {OLLAMA_INSTANCE}')}\n"
            f"> {alerts_cfg.model_loads_per_hour}",
            "warning",
            f"Ollama instance {{{{ $labels.{OLLAMA_INSTANCE} }}}} loaded models "
            '{{ $value | printf "%.0f" }} times in the last hour',
            f"More than {alerts_cfg.model_loads_per_hour} model loads in an hour on one "
            "instance: models are evicting each other, and each load is a cold start of "
            "seconds to minutes for the requests behind it. More models are in use than "
            f"fit (maxLoadedModels {config.ollama.max_loaded_models}, GPU memory). Look "
            "at 'Models loaded by instance' and 'Model loads per hour by instance' on the "
            f"'{title}' dashboard. Fixes: more instances or GPU memory, fewer models, a "
            "larger ollama.maxLoadedModels if memory allows, a longer "
            f"gateway.queue.loadPatienceSeconds (now "
            f"{config.gateway.queue.load_patience_seconds:g}s) so that the router evicts "
            "a busy model less often.",
        ),
    ]
    if instances > 1:
        # With one instance, LLMUpstreamDown already says it (and pages).
        up = f"llm_instance_up{selector(GATEWAY_JOB)}"
        alerts.append(
            Alert(
                "LLMOllamaInstanceDown",
                # max over replicas: down only when no gateway replica reaches it.
                f"max by ({BY_STACK}, {OLLAMA_INSTANCE}) ({up}) == 0",
                "warning",
                f"Ollama instance {{{{ $labels.{OLLAMA_INSTANCE} }}}} is down",
                "No gateway replica reaches this Ollama instance (its /api/ps, polled every "
                f"{config.gateway.poll_seconds:g}s, fails). The router sends its work to the "
                f"other {instances - 1} instance(s): capacity is reduced, its models load "
                "elsewhere, requests queue longer and may be shed. If every instance is "
                f"down, LLMUpstreamDown fires. Look: `docker ps -a --filter name={prefix}-"
                "ollama` (health, restarts, OOM kills), `docker logs <container>`, and "
                f"'Ollama instances up' on the '{title}' dashboard.",
            )
        )
    return alerts


def _nginx_alerts(config: StackConfig) -> list[Alert]:
    prefix = config.name_prefix
    return [
        Alert(
            "LLMNginxDown",
            f"nginx_up{selector(NGINX_JOB)} == 0",
            "critical",
            "nginx (read by exporter {{ $labels.instance }}) is down",
            "nginx-prometheus-exporter cannot read nginx's stub_status: nginx is down or "
            "wedged, and with it the path into the stack (edge and balancer). Look: "
            f"`docker ps -a --filter name={prefix}-nginx`, `docker logs {prefix}-nginx`.",
        ),
        Alert(
            "LLMNginxExporterDown",
            f"up{selector(NGINX_JOB)} == 0",
            "warning",
            "nginx exporter {{ $labels.instance }} is down: nginx is unobserved",
            "Prometheus cannot scrape nginx-prometheus-exporter, so LLMNginxDown cannot "
            f"fire. Look: `docker ps -a --filter name={prefix}-nginx-exporter` and its logs.",
        ),
    ]


def alert_rules(config: StackConfig) -> list[dict[str, Any]]:
    """Every alerting rule of the stack, as Prometheus rule dicts."""
    alerts = [
        *_gateway_alerts(config),
        *_upstream_alerts(config),
        *_quality_alerts(config),
        *_cache_alerts(config),
        *_redis_alerts(config),
        *_routing_alerts(config),
        *_nginx_alerts(config),
    ]
    for_minutes = config.monitoring.alerts.for_minutes
    return [alert.rule(for_minutes) for alert in alerts]


def render_alert_rules(config: StackConfig) -> str:
    """The text of the alert rule file (one group, evaluated at the global interval)."""
    doc = {"groups": [{"name": GROUP_NAME, "rules": alert_rules(config)}]}
    return yamltext.dump(doc)
