"""Grafana dashboards built with grafana-foundation-sdk (no hand-edited JSON).

One overview dashboard per stack, rows from the user's view (is it up, how busy, how
fast, is the cache working, what fails) down to nginx and, on GPU stacks, the GPUs.
Queries come from `promql` so a panel and the alert it explains agree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
)
from llm_config.model import StackConfig

from llm_monitoring import promql
from llm_monitoring.jobs import GATEWAY_JOB, GPU_JOB, NGINX_JOB, selector

DATASOURCE_UID = "prometheus"
DATASOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
RATE = "$__rate_interval"  # Grafana picks >= 4 scrapes (the datasource knows the interval)
GW = selector(GATEWAY_JOB)
NGINX = selector(NGINX_JOB)
GPU = selector(GPU_JOB)


def overview_uid(config: StackConfig) -> str:
    return f"{config.name_prefix}-overview"


def overview_title(config: StackConfig) -> str:
    return f"LLM stack ({config.name_prefix})"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: Sequence[Query]
    unit: str = units.Short
    kind: str = "timeseries"  # or "stat"
    width: int = 8
    height: int = 8
    # A red line/colour from this value on (an alert threshold, shown where it applies).
    red_from: float | None = None
    # stat panels: red below this value instead (replicas up, upstream up).
    red_below: float | None = None
    value_names: dict[str, tuple[str, str]] = field(default_factory=dict)
    max_value: float | None = None


def _per_minute(expr: str) -> str:
    return f"{expr} * 60"


def _quantiles(metric: str, *matchers: str) -> list[Query]:
    return [
        Query(promql.histogram_quantile(q, metric, RATE, "", *matchers), f"p{round(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ]


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
            "Whether any gateway replica's probe of the upstream (/api/tags through the "
            "balancer) succeeds. DOWN means no Ollama instance answers.",
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
            [Query(_per_minute(promql.gateway_rate(requests, RATE, "model")), "{{model}}")],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "Requests per minute by endpoint and status",
            "Answered requests per minute, by API endpoint and HTTP status.",
            [Query(
                _per_minute(promql.gateway_rate(requests, RATE, "endpoint, status")),
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
            _quantiles(duration, promql.NOT_FROM_CACHE),
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
            _quantiles("llm_time_to_first_token_seconds"),
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
            "Time spent waiting on Ollama (through the balancer), request to last byte.",
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
                Query(_per_minute(promql.gateway_rate("llm_cache_hits_total", RATE, "")), "hits"),
                Query(
                    _per_minute(promql.gateway_rate("llm_cache_misses_total", RATE, "")),
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
                    _per_minute(promql.gateway_rate("llm_stale_served_total", RATE, "")),
                    "stale",
                ),
                Query(
                    _per_minute(promql.gateway_rate("llm_coalesced_requests_total", RATE, "")),
                    "coalesced",
                ),
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
                    _per_minute(promql.gateway_rate("llm_upstream_errors_total", RATE, "reason")),
                    "upstream {{reason}}",
                ),
                Query(
                    _per_minute(promql.gateway_rate(
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
                _per_minute(promql.gateway_rate("llm_rate_limited_total", RATE, "key, limit")),
                "{{key}} ({{limit}})",
            )],
            unit=units.RequestsPerMinute,
        ),
        PanelSpec(
            "Auth failures",
            "Requests refused with 401/403 by reason and key name. A burst from one "
            "source is someone guessing keys.",
            [Query(
                _per_minute(promql.gateway_rate("llm_auth_failures_total", RATE, "reason, key")),
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
                _per_minute(promql.gateway_rate("llm_redis_errors_total", RATE, "operation")),
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


def _thresholds(spec: PanelSpec) -> dashboard_builders.ThresholdsConfig | None:
    if spec.red_from is not None:
        steps = [Threshold(None, "green"), Threshold(spec.red_from, "red")]
    elif spec.red_below is not None:
        steps = [Threshold(None, "red"), Threshold(spec.red_below, "green")]
    else:
        return None
    return dashboard_builders.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)


def _panel(spec: PanelSpec, panel_id: int) -> timeseries.Panel | stat.Panel:
    panel: timeseries.Panel | stat.Panel
    if spec.kind == "stat":
        panel = (
            stat.Panel()
            .graph_mode(common.BigValueGraphMode.AREA)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        )
    else:
        panel = timeseries.Panel().legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    panel = (
        panel.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
    )
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        target = prometheus_builders.Dataquery().expr(query.expr).ref_id(ref).datasource(DATASOURCE)
        if query.legend:
            target = target.legend_format(query.legend)
        panel = panel.with_target(target)
    thresholds = _thresholds(spec)
    if thresholds is not None:
        panel = panel.thresholds(thresholds)
        if isinstance(panel, timeseries.Panel):
            panel = panel.thresholds_style(
                common_builders.GraphThresholdsStyleConfig().mode(
                    common.GraphThresholdsStyleMode.DASHED
                )
            )
    if spec.max_value is not None:
        panel = panel.min(0).max(spec.max_value)
    if spec.value_names:
        options = {
            value: ValueMappingResult(text=text, color=color, index=i)
            for i, (value, (text, color)) in enumerate(spec.value_names.items())
        }
        panel = panel.mappings([ValueMap(options)])
    return panel


def overview_rows(config: StackConfig) -> list[tuple[str, list[PanelSpec]]]:
    """The overview dashboard's rows and panels (GPU row only on GPU stacks)."""
    rows = [
        ("Health", _health_row(config)),
        ("Traffic", _traffic_row()),
        ("Latency", _latency_row(config)),
        ("Tokens", _tokens_row()),
        ("Cache", _cache_row(config)),
        ("Errors, limits and dependencies", _errors_row(config)),
        ("Nginx", _nginx_row()),
    ]
    if config.ollama.uses_gpus:
        rows.append(("GPUs", _gpu_row()))
    return rows


def overview_dashboard(config: StackConfig) -> dashboard_builders.Dashboard:
    refresh = f"{max(30, config.monitoring.scrape_interval_seconds)}s"
    board = (
        dashboard_builders.Dashboard(overview_title(config))
        .uid(overview_uid(config))
        .description(
            "Gateway, cache, upstream and nginx of one llm-stack deployment. Generated "
            "from the stack config by llm_monitoring.dashboards: edit the code, not this."
        )
        .tags(["llm-stack", config.environment])
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh(refresh)
        .readonly()
    )
    panel_id = 0
    for title, specs in overview_rows(config):
        panel_id += 1
        board = board.with_row(dashboard_builders.Row(title).id(panel_id))
        for spec in specs:
            panel_id += 1
            board = board.with_panel(_panel(spec, panel_id))
    return board


def dashboard_json(board: dashboard_builders.Dashboard) -> str:
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def build_dashboards(config: StackConfig) -> dict[str, str]:
    """File name -> dashboard JSON, for Grafana's file provider."""
    return {f"{overview_uid(config)}.json": dashboard_json(overview_dashboard(config))}
