"""The stack's dashboards: the overview (here) and usage per key (`usage.py`).

The overview's rows go from the user's view (is it up, how busy, how fast, is the cache
working, what fails) down to the router (`routing_panels.py`, model-aware routing
only), nginx and, on GPU stacks, the GPUs. Queries come from `promql` so a panel and
the alert it explains agree; `panels.py` turns the specs into Grafana JSON.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import units
from llm_config.model import StackConfig

from llm_monitoring import promql
from llm_monitoring.jobs import GPU_JOB, NGINX_JOB, selector
from llm_monitoring.panels import (
    GW,
    RATE,
    PanelSpec,
    Query,
    Row,
    build_dashboard,
    dashboard_json,
    per_minute,
    quantiles,
)
from llm_monitoring.routing_panels import routing_row
from llm_monitoring.usage import usage_dashboard, usage_uid

NGINX = selector(NGINX_JOB)
GPU = selector(GPU_JOB)


def overview_uid(config: StackConfig) -> str:
    return f"{config.name_prefix}-overview"


def overview_title(config: StackConfig) -> str:
    return f"LLM stack ({config.name_prefix})"


def upstream_path(config: StackConfig) -> str:
    """How the gateway reaches Ollama, for descriptions."""
    if config.gateway.routing == "model-aware":
        return "via the model-aware router"
    return "through the balancer"


def _health_row(config: StackConfig) -> list[PanelSpec]:
    alerts = config.monitoring.alerts
    window = promql.alert_window(config)
    replicas = config.gateway.replicas
    return [
        PanelSpec(
            "Gateway replicas up",
            f"Gateway replicas Prometheus can scrape, of {replicas} deployed.",
            [Query(promql.sum_by("", f"up{GW}"))],
            kind="stat", width=4, height=4, red_below=replicas,
        ),
        PanelSpec(
            "Ollama reachable",
            "Whether any gateway replica's probe of the upstream (/api/tags "
            f"{upstream_path(config)}) succeeds. DOWN means no Ollama instance answers.",
            [Query(f"max(llm_upstream_up{GW})")],
            kind="stat", width=4, height=4, red_below=1,
            value_names={"0": ("DOWN", "red"), "1": ("UP", "green")},
        ),
        PanelSpec(
            f"5xx ratio ({window})",
            f"Share of answers that were 5xx; the alert threshold is {alerts.error_ratio:.0%}.",
            [Query(promql.error_ratio(window, ""))],
            unit=units.PercentUnit, kind="stat", width=4, height=4,
            red_from=alerts.error_ratio,
        ),
        PanelSpec(
            f"p95 latency, model-served ({window})",
            "95th percentile of request duration without cache hits and stale serves; the "
            f"alert threshold is {alerts.p95_latency_seconds:g}s.",
            [Query(promql.histogram_quantile(
                0.95, "llm_request_duration_seconds", window, "", promql.NOT_FROM_CACHE
            ))],
            unit=units.Seconds, kind="stat", width=4, height=4,
            red_from=alerts.p95_latency_seconds,
        ),
        PanelSpec(
            f"Cache hit ratio ({window})",
            "Hits / (hits + misses) of cacheable requests.",
            [Query(promql.cache_hit_ratio(window, ""))],
            unit=units.PercentUnit, kind="stat", width=4, height=4,
        ),
        PanelSpec(
            "In-flight requests",
            "Requests being answered right now, all replicas.",
            [Query(promql.sum_by("", f"llm_in_flight_requests{GW}"))],
            kind="stat", width=4, height=4,
        ),
    ]  # fmt: skip


def _traffic_row() -> list[PanelSpec]:
    requests = "llm_requests_total"
    return [
        PanelSpec(
            "Requests per minute by model",
            "Answered requests per minute. Models the upstream does not list in /api/tags "
            "are counted as `other`.",
            [Query(per_minute(promql.gateway_rate(requests, RATE, "model")), "{{model}}")],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "Requests per minute by endpoint and status",
            "Answered requests per minute, by API endpoint and HTTP status.",
            [Query(
                per_minute(promql.gateway_rate(requests, RATE, "endpoint, status")),
                "{{endpoint}} {{status}}",
            )],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "In-flight requests by replica",
            "Requests being answered right now (streams count until their last byte).",
            [Query(promql.sum_by("instance", f"llm_in_flight_requests{GW}"), "{{instance}}")],
        ),
    ]  # fmt: skip


def _latency_row(config: StackConfig) -> list[PanelSpec]:
    duration = "llm_request_duration_seconds"
    return [
        PanelSpec(
            "Latency p50 / p95 / p99 (model-served)",
            "Request to last byte, cache hits and stale serves excluded (they answer in "
            "milliseconds and would hide slow generations). The red line is the p95 "
            "alert threshold.",
            quantiles(duration, promql.NOT_FROM_CACHE),
            unit=units.Seconds, red_from=config.monitoring.alerts.p95_latency_seconds,
        ),
        PanelSpec(
            "Latency p95 by cache result",
            "HIT and STALE come from Redis; MISS, BYPASS and COALESCED waited on Ollama.",
            [Query(
                promql.histogram_quantile(0.95, duration, RATE, "cache"), "{{cache}}"
            )],
            unit=units.Seconds,
        ),
        PanelSpec(
            "Time to first token p50 / p95 / p99",
            "Request to the first body byte sent to the client: queueing and model loads "
            "show up here first.",
            quantiles("llm_time_to_first_token_seconds"),
            unit=units.Seconds,
        ),
        PanelSpec(
            "Gateway overhead p50 / p99",
            "Time the gateway adds on top of the upstream (total minus upstream time).",
            [
                Query(promql.histogram_quantile(
                    q, "llm_gateway_overhead_seconds", RATE, ""
                ), f"p{round(q * 100)}")
                for q in (0.5, 0.99)
            ],
            unit=units.Seconds,
        ),
        PanelSpec(
            "Upstream time p95 by endpoint",
            f"Time spent waiting on Ollama ({upstream_path(config)}), request to last byte.",
            [Query(promql.histogram_quantile(
                0.95, "llm_upstream_duration_seconds", RATE, "endpoint"
            ), "{{endpoint}}")],
            unit=units.Seconds,
        ),
    ]  # fmt: skip


def _tokens_row() -> list[PanelSpec]:
    return [
        PanelSpec(
            "Tokens generated per second by model",
            "Throughput of the whole pool: eval_count of final chunks, per second.",
            [Query(promql.gateway_rate("llm_tokens_generated_total", RATE, "model"), "{{model}}")],
        ),
        PanelSpec(
            "Prompt tokens per second by model",
            "Prompt tokens evaluated upstream (prompt_eval_count), per second.",
            [Query(promql.gateway_rate("llm_prompt_tokens_total", RATE, "model"), "{{model}}")],
        ),
        PanelSpec(
            "Generation speed per request (tokens/s, median)",
            "Per-request speed reported by Ollama (eval_count / eval_duration). A drop "
            "means saturated GPUs or a model running on CPU.",
            [Query(promql.histogram_quantile(
                0.5, "llm_generation_tokens_per_second", RATE, "model"
            ), "{{model}}")],
        ),
    ]  # fmt: skip


def _cache_row(config: StackConfig) -> list[PanelSpec]:
    return [
        PanelSpec(
            "Cache hit ratio",
            "Hits / (hits + misses) now and at the same time a day earlier: the "
            "LLMCacheHitRatioCollapse alert compares these two lines "
            f"(fires below {config.monitoring.alerts.cache_hit_ratio_drop:g} x a day ago).",
            [
                Query(promql.cache_hit_ratio(RATE, ""), "now"),
                Query(promql.cache_hit_ratio(RATE, "", offset="1d"), "a day earlier"),
            ],
            unit=units.PercentUnit, max_value=1,
        ),
        PanelSpec(
            "Cache hits and misses per minute",
            "Cacheable requests by outcome.",
            [
                Query(per_minute(promql.gateway_rate("llm_cache_hits_total", RATE, "")), "hits"),
                Query(
                    per_minute(promql.gateway_rate("llm_cache_misses_total", RATE, "")),
                    "misses",
                ),
            ],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "Stale and coalesced serves per minute",
            "Stale: expired entries served because the upstream failed. Coalesced: "
            "identical concurrent requests that shared one upstream call.",
            [
                Query(
                    per_minute(promql.gateway_rate("llm_stale_served_total", RATE, "")),
                    "stale",
                ),
                Query(
                    per_minute(promql.gateway_rate("llm_coalesced_requests_total", RATE, "")),
                    "coalesced",
                ),
            ],
            unit=units.RequestsPerMinute,
        ),
        *_semantic_panels(config),
    ]  # fmt: skip


def _semantic_panels(config: StackConfig) -> list[PanelSpec]:
    state = "on" if config.gateway.semantic_cache.enabled else "off in this stack"
    return [
        PanelSpec(
            "Semantic cache lookups per minute by outcome",
            f"The semantic cache is {state} (gateway.semanticCache). hit: a rephrased "
            "question served from the cache; near_miss: the best candidate just under the "
            "threshold; refused: over it but refused by a guard (numbers, negation, order); "
            "embed_failed and redis_unavailable are misses, never errors.",
            [Query(
                per_minute(promql.gateway_rate("llm_semantic_cache_lookups_total", RATE,
                                               "outcome")),
                "{{outcome}}",
            )],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "Semantic lookup and embedding time (p95)",
            "A lookup: the index read, the embedding when the text's vector is not stored "
            "yet, the scan. Embedding: the calls to the stack's embedding model.",
            [
                Query(promql.histogram_quantile(0.95, "llm_semantic_cache_lookup_seconds",
                                                RATE, ""), "lookup p95"),
                Query(promql.histogram_quantile(0.95, "llm_semantic_cache_embed_seconds",
                                                RATE, ""), "embedding p95"),
            ],
            unit=units.Seconds,
        ),
        PanelSpec(
            "Semantic refusals by guard and embedding errors per minute",
            "Candidates over the threshold that a guard refused (what embeddings miss), "
            "and embedding calls that failed (each a miss).",
            [
                Query(per_minute(promql.gateway_rate("llm_semantic_cache_refusals_total",
                                                     RATE, "guard")), "refused: {{guard}}"),
                Query(per_minute(promql.gateway_rate("llm_semantic_cache_embed_errors_total",
                                                     RATE, "reason")), "embed error: {{reason}}"),
            ],
            unit=units.RequestsPerMinute,
        ),
    ]  # fmt: skip


def _errors_row(config: StackConfig) -> list[PanelSpec]:
    return [
        PanelSpec(
            "Errors by reason",
            "Failed upstream calls by reason (connect, timeout, status, stream, "
            "cancelled) and 5xx answers by status.",
            [
                Query(
                    per_minute(promql.gateway_rate("llm_upstream_errors_total", RATE, "reason")),
                    "upstream {{reason}}",
                ),
                Query(
                    per_minute(promql.gateway_rate(
                        "llm_requests_total", RATE, "status", promql.SERVER_ERROR
                    )),
                    "HTTP {{status}}",
                ),
            ],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "5xx ratio",
            "Share of answers that were 5xx; the red line is the alert threshold.",
            [Query(promql.error_ratio(RATE, ""), "5xx ratio")],
            unit=units.PercentUnit, red_from=config.monitoring.alerts.error_ratio,
        ),
        PanelSpec(
            "Rate-limited requests by key",
            "Requests refused with 429, by key name (from the config, never the key) and "
            "the limit that refused them.",
            [Query(
                per_minute(promql.gateway_rate("llm_rate_limited_total", RATE, "key, limit")),
                "{{key}} ({{limit}})",
            )],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "Auth failures",
            "Requests refused with 401/403 by reason and key name. A burst from one "
            "source is someone guessing keys.",
            [Query(
                per_minute(promql.gateway_rate("llm_auth_failures_total", RATE, "reason, key")),
                "{{reason}} {{key}}",
            )],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "Redis errors by operation",
            "Failed or timed-out Redis calls. While Redis fails, requests go uncached to "
            "Ollama and rate limits "
            + ("refuse requests (limitsFailClosed)." if config.gateway.limits_fail_closed
               else "are not enforced (limitsFailClosed is off)."),
            [Query(
                per_minute(promql.gateway_rate("llm_redis_errors_total", RATE, "operation")),
                "{{operation}}",
            )],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "Upstream reachable by replica",
            "1 when the replica's last probe of the upstream (/api/tags) succeeded.",
            [Query(f"max by (instance) (llm_upstream_up{GW})", "{{instance}}")],
            max_value=1,
        ),
    ]  # fmt: skip


_NO_PER_UPSTREAM = (
    " OSS nginx's stub_status only has process-wide numbers: there is no per-upstream "
    "(per Ollama instance) breakdown without NGINX Plus. Per-upstream health is in "
    "'Upstream reachable by replica' and 'Errors by reason'."
)


def _nginx_row() -> list[PanelSpec]:
    return [
        PanelSpec(
            "Nginx active connections",
            "Client connections by state, from nginx-prometheus-exporter." + _NO_PER_UPSTREAM,
            [
                Query(f"sum by (instance) (nginx_connections_{state}{NGINX})",
                      f"{state} {{{{instance}}}}")
                for state in ("active", "reading", "writing", "waiting")
            ],
        ),
        PanelSpec(
            "Nginx requests per second",
            "All HTTP requests nginx handled." + _NO_PER_UPSTREAM,
            [Query(f"sum by (instance) (rate(nginx_http_requests_total{NGINX}[{RATE}]))",
                   "{{instance}}")],
            unit=units.RequestsPerSecond,
        ),
        PanelSpec(
            "Nginx up",
            "1 when the exporter can read nginx's stub_status page.",
            [Query(f"min by (instance) (nginx_up{NGINX})", "{{instance}}")],
            max_value=1,
        ),
    ]  # fmt: skip


def _gpu_row() -> list[PanelSpec]:
    return [
        PanelSpec(
            "GPU utilisation",
            "DCGM_FI_DEV_GPU_UTIL per GPU (dcgm-exporter).",
            [Query(f"max by (gpu) (DCGM_FI_DEV_GPU_UTIL{GPU})", "GPU {{gpu}}")],
            unit=units.Percent, max_value=100,
        ),
        PanelSpec(
            "GPU memory used",
            "Framebuffer used / total per GPU. Near 100% means models are evicted or "
            "split onto the CPU.",
            [Query(
                f"max by (gpu) (DCGM_FI_DEV_FB_USED{GPU})\n/\n"
                f"(max by (gpu) (DCGM_FI_DEV_FB_USED{GPU})"
                f" + max by (gpu) (DCGM_FI_DEV_FB_FREE{GPU}))",
                "GPU {{gpu}}",
            )],
            unit=units.PercentUnit, max_value=1,
        ),
        PanelSpec(
            "GPU temperature and power",
            "Temperature (C) and power draw (W) per GPU.",
            [
                Query(f"max by (gpu) (DCGM_FI_DEV_GPU_TEMP{GPU})", "GPU {{gpu}} C"),
                Query(f"max by (gpu) (DCGM_FI_DEV_POWER_USAGE{GPU})", "GPU {{gpu}} W"),
            ],
        ),
    ]  # fmt: skip


def overview_rows(config: StackConfig) -> list[Row]:
    """The overview dashboard's rows (Routing only with model-aware routing, GPUs only
    on GPU stacks: elsewhere their metrics do not exist and the panels would be empty)."""
    rows = [
        Row("Health", _health_row(config)),
        Row("Traffic", _traffic_row()),
        Row("Latency", _latency_row(config)),
    ]
    if config.gateway.routing == "model-aware":
        rows.append(Row("Routing: queue, instances, model loads", routing_row(config)))
    rows += [
        Row("Tokens", _tokens_row()),
        Row("Cache", _cache_row(config)),
        Row("Errors, limits and dependencies", _errors_row(config)),
        Row("Nginx", _nginx_row()),
    ]
    if config.ollama.uses_gpus:
        rows.append(Row("GPUs", _gpu_row()))
    return rows


def overview_dashboard(config: StackConfig) -> dashboard_builders.Dashboard:
    return build_dashboard(
        config,
        overview_uid(config),
        overview_title(config),
        "Gateway, routing, cache, upstream and nginx of one llm-stack deployment.",
        overview_rows(config),
    )


def build_dashboards(config: StackConfig) -> dict[str, str]:
    """File name -> dashboard JSON, for Grafana's file provider."""
    return {
        f"{overview_uid(config)}.json": dashboard_json(overview_dashboard(config)),
        f"{usage_uid(config)}.json": dashboard_json(usage_dashboard(config)),
    }
