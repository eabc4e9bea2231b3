"""`promtool test rules` cases for every alert: when it must fire and when it must not.

Series are what the gateway / nginx exporter would expose, with the target labels the
rendered prometheus.yml adds. Expectations are written from the stack config's
thresholds, never read back from the rendered rules (only the annotation *templates*
come from the rules, because promtool compares annotations exactly).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from llm_config.model import StackConfig

from tests.monitoring.gotemplate import expand
from tests.monitoring.stacks import SERVICE, STACK

STACK_LABELS = {"job": "llm-gateway", "service": SERVICE, "stack": STACK}
GW1 = "gw-1:8000"
GW2 = "gw-2:8000"
NGINX_EXPORTER = "nginx-exporter:9113"


def series(metric: str, job: str = "llm-gateway", **labels: str) -> str:
    all_labels = {"job": job, "service": SERVICE, "stack": STACK, **labels}
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(all_labels.items()))
    return f"{metric}{{{inner}}}"


def counter(*segments: tuple[int, float], start: float = 0) -> str:
    """A counter sampled every minute: `(minutes, increase per minute)` segments."""
    values = [start]
    for minutes, per_minute in segments:
        for _ in range(minutes):
            values.append(values[-1] + per_minute)
    return " ".join(f"{v:g}" for v in values)


def absent_then(minutes: int, after: str) -> str:
    """No sample for `minutes` minutes, then the values of `after`."""
    return " ".join(["_"] * minutes + [after])


@dataclass(frozen=True)
class Firing:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Check:
    eval_time: str
    firing: list[Firing] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    name: str
    series: dict[str, str]
    checks: list[Check]


def _gateway_up(gw1: str, gw2: str) -> dict[str, str]:
    return {series("up", instance=GW1): gw1, series("up", instance=GW2): gw2}


def gateway_down(config: StackConfig) -> list[Case]:
    fired = Firing({**STACK_LABELS, "severity": "critical"}, 0)
    return [
        Case("all replicas down", _gateway_up("1 1 1 0x27", "1 1 1 0x27"),
             [Check("6m"), Check("20m", [fired])]),
        Case("one replica still up", _gateway_up("1x30", "1 1 1 0x27"), [Check("20m")]),
        Case("a 3-minute outage stays quiet", _gateway_up("1 1 1 0 0 0 1x24", "1 1 1 0 0 0 1x24"),
             [Check("5m"), Check("20m")]),
        Case(
            "no gateway target at all",
            {series("up", job="nginx", instance=NGINX_EXPORTER): "1x30"},
            [Check("20m", [Firing({"job": "llm-gateway", "severity": "critical"}, 1)])],
        ),
    ]  # fmt: skip


def gateway_replica_down(config: StackConfig) -> list[Case]:
    fired = Firing({**STACK_LABELS, "instance": GW2, "severity": "warning"}, 0)
    return [
        Case("one replica down", _gateway_up("1x30", "1 1 1 0x27"), [Check("20m", [fired])]),
        Case("all up", _gateway_up("1x30", "1x30"), [Check("20m")]),
        Case("a 3-minute blip", _gateway_up("1x30", "1 1 1 0 0 0 1x24"), [Check("20m")]),
    ]


def upstream_down(config: StackConfig) -> list[Case]:
    def health(gw1: str, gw2: str) -> dict[str, str]:
        return {
            **_gateway_up("1x30", "1x30"),
            series("llm_upstream_up", instance=GW1): gw1,
            series("llm_upstream_up", instance=GW2): gw2,
        }

    fired = Firing({**STACK_LABELS, "severity": "critical"}, 0)
    return [
        Case("no replica reaches ollama", health("0x30", "0x30"), [Check("20m", [fired])]),
        Case("one replica still reaches it", health("1x30", "0x30"), [Check("20m")]),
        Case("a 3-minute outage", health("1 1 0 0 0 1x25", "1 1 0 0 0 1x25"), [Check("20m")]),
    ]


def upstream_health_unknown(config: StackConfig) -> list[Case]:
    fired = Firing({"job": "llm-gateway", "severity": "warning"}, 1)
    return [
        Case("gateways up without llm_upstream_up", _gateway_up("1x30", "0x30"),
             [Check("20m", [fired])]),
        Case("gateways down (LLMGatewayDown covers it)", _gateway_up("0x30", "0x30"),
             [Check("20m")]),
        Case(
            "health reported",
            {**_gateway_up("1x30", "1x30"), series("llm_upstream_up", instance=GW1): "0x30"},
            [Check("20m")],
        ),
    ]  # fmt: skip


def _requests(**per_minute_by_status: float) -> dict[str, str]:
    return {
        series(
            "llm_requests_total", instance=GW1, model="llama3.2:1b", endpoint="chat", status=s[1:]
        ): counter((30, rate))
        for s, rate in per_minute_by_status.items()
    }


def high_error_ratio(config: StackConfig) -> list[Case]:
    threshold = config.monitoring.alerts.error_ratio
    fired = [Firing({**STACK_LABELS, "severity": "critical"}, 0.25)] if threshold < 0.25 else []
    return [
        Case("25% answered 503", _requests(s200=75, s503=25), [Check("20m", fired)]),
        Case("2% answered 500", _requests(s200=98, s500=2), [Check("20m")]),
        Case("4xx are the clients' errors", _requests(s200=50, s429=40, s404=10), [Check("20m")]),
        Case("all fail but only 5 requests per window", _requests(s500=1), [Check("20m")]),
    ]


def _latency(cache: str, per_minute: float, bucket: str) -> dict[str, str]:
    """`per_minute` requests, all of them in the bucket ending at `bucket`."""
    out = {}
    for le in ("1", "30", "60", "+Inf"):
        inside = le == "+Inf" or float(le) >= float(bucket)
        name = series(
            "llm_request_duration_seconds_bucket",
            instance=GW1, model="llama3.2:1b", endpoint="chat", cache=cache, le=le,
        )  # fmt: skip
        out[name] = counter((30, per_minute if inside else 0))
    count = series(
        "llm_request_duration_seconds_count",
        instance=GW1, model="llama3.2:1b", endpoint="chat", cache=cache,
    )  # fmt: skip
    out[count] = counter((30, per_minute))
    return out


def high_latency_p95(config: StackConfig) -> list[Case]:
    # All misses in the (30, 60] bucket: p95 interpolates to 30 + 0.95 * 30.
    p95 = 58.5
    threshold = config.monitoring.alerts.p95_latency_seconds
    fired = [Firing({**STACK_LABELS, "severity": "warning"}, p95)] if p95 > threshold else []
    return [
        Case(
            "slow misses, drowned by fast hits in an all-requests p95",
            {**_latency("MISS", 10, "60"), **_latency("HIT", 1000, "1")},
            [Check("20m", fired)],
        ),
        Case("fast misses", _latency("MISS", 10, "1"), [Check("20m")]),
        Case("slow but only 5 requests per window", _latency("MISS", 1, "60"), [Check("20m")]),
        Case("slow stale serves are not model latency", _latency("STALE", 10, "60"),
             [Check("20m")]),
    ]  # fmt: skip


DAY = 1440


def _cache(hits: str, misses: str) -> dict[str, str]:
    labels = {"instance": GW1, "model": "llama3.2:1b", "endpoint": "chat"}
    return {
        series("llm_cache_hits_total", **labels): hits,
        series("llm_cache_misses_total", **labels): misses,
    }


def cache_hit_ratio_collapse(config: StackConfig) -> list[Case]:
    drop = config.monitoring.alerts.cache_hit_ratio_drop
    # A day ago 80% hits; now 10%.
    fires = drop * 0.8 > 0.1
    fired = [Firing({**STACK_LABELS, "severity": "warning"}, 0.1)] if fires else []
    at = "1d30m"
    return [
        Case(
            "80% -> 10%",
            _cache(counter((DAY, 80), (60, 10)), counter((DAY, 20), (60, 90))),
            [Check("1d", []), Check(at, fired)],
        ),
        Case(
            "80% -> 60% is not a collapse",
            _cache(counter((DAY, 80), (60, 60)), counter((DAY, 20), (60, 40))),
            [Check(at)],
        ),
        Case(
            "too little cacheable traffic now",
            _cache(counter((DAY, 80), (60, 0)), counter((DAY, 20), (60, 1))),
            [Check(at)],
        ),
        Case(
            "no traffic a day ago: no baseline",
            _cache(absent_then(DAY, counter((60, 10))), absent_then(DAY, counter((60, 90)))),
            [Check(at)],
        ),
        Case(
            # A restarted gateway whose cache never hits exports no hits counter at all.
            "hits counter gone after a restart",
            _cache(
                counter((DAY, 80)) + " stale",
                counter((DAY, 20)) + " " + counter((59, 100)),
            ),
            [Check(at, [Firing({**STACK_LABELS, "severity": "warning"}, 0.0)])],
        ),
    ]


def redis_unreachable(config: StackConfig) -> list[Case]:
    severity = "critical" if config.gateway.limits_fail_closed else "warning"
    errors = series("llm_redis_errors_total", instance=GW1, operation="get")
    return [
        Case("an error every 10 s", {errors: counter((30, 6))},
             [Check("20m", [Firing({**STACK_LABELS, "severity": severity}, 0.1)])]),
        Case("one error, then none", {errors: "0x10 1x19"}, [Check("12m"), Check("20m")]),
        Case("no errors", {errors: "0x30"}, [Check("20m")]),
    ]  # fmt: skip


def _queue(shed: dict[str, float], dispatched: float | None) -> dict[str, str]:
    """Sheds per minute by reason, and dispatched requests per minute (None: no series)."""
    out = {
        series("llm_shed_total", instance=GW1, reason=reason, priority="interactive"): (
            counter((30, per_minute))
        )
        for reason, per_minute in shed.items()
    }
    if dispatched is not None:
        count = series(
            "llm_queue_wait_seconds_count",
            instance=GW1,
            model="llama3.2:1b",
            priority="interactive",
        )
        out[count] = counter((30, dispatched))
    return out


def requests_shed(config: StackConfig) -> list[Case]:
    threshold = config.monitoring.alerts.shed_ratio

    def fired(ratio: float) -> list[Firing]:
        return [Firing({**STACK_LABELS, "severity": "warning"}, ratio)] if ratio > threshold else []

    return [
        Case("10% of queued requests shed", _queue({"queue_full": 2, "overloaded": 1}, 27),
             [Check("20m", fired(0.1))]),
        Case("2% shed", _queue({"deadline": 1}, 49), [Check("20m")]),
        Case("shutdowns are deploys, not overload", _queue({"shutdown": 10}, 10),
             [Check("20m")]),
        # Nothing was ever dispatched, so that counter does not exist: still a ratio of 1.
        Case("everything shed, nothing dispatched", _queue({"overloaded": 5}, None),
             [Check("20m", fired(1.0))]),
        Case("everything shed but only 5 requests per window", _queue({"queue_full": 0.5}, None),
             [Check("20m")]),
    ]  # fmt: skip


OLLAMA_1 = "ollama-1:11434"
OLLAMA_2 = "ollama-2:11434"


def _instances_up(**by_replica_and_instance: str) -> dict[str, str]:
    """`gw1_ollama2="0x30"`: what replica gw1 says of instance ollama-2."""
    out = {}
    for key, values in by_replica_and_instance.items():
        replica, instance = key.split("_")
        gateway = {"gw1": GW1, "gw2": GW2}[replica]
        ollama = {"ollama1": OLLAMA_1, "ollama2": OLLAMA_2}[instance]
        out[series("llm_instance_up", instance=gateway, ollama_instance=ollama)] = values
    return out


def ollama_instance_down(config: StackConfig) -> list[Case]:
    fired = Firing({**STACK_LABELS, "ollama_instance": OLLAMA_2, "severity": "warning"}, 0)
    healthy = {"gw1_ollama1": "1x30", "gw2_ollama1": "1x30"}
    return [
        Case("no replica reaches ollama-2",
             _instances_up(**healthy, gw1_ollama2="1 1 1 0x27", gw2_ollama2="1 1 1 0x27"),
             [Check("6m"), Check("20m", [fired])]),
        Case("one replica still reaches it",
             _instances_up(**healthy, gw1_ollama2="0x30", gw2_ollama2="1x30"), [Check("20m")]),
        Case("a 3-minute blip",
             _instances_up(**healthy, gw1_ollama2="1 1 0 0 0 1x25", gw2_ollama2="1 1 0 0 0 1x25"),
             [Check("20m")]),
    ]  # fmt: skip


def _loads(**per_minute: float) -> dict[str, str]:
    """`gw1_ollama1_m1=0.25`: loads per minute replica gw1 counts of model m1 on ollama-1."""
    out = {}
    for key, rate in per_minute.items():
        replica, instance, model = key.split("_")
        gateway = {"gw1": GW1, "gw2": GW2}[replica]
        ollama = {"ollama1": OLLAMA_1, "ollama2": OLLAMA_2}[instance]
        name = series(
            "llm_model_loads_total", instance=gateway, ollama_instance=ollama, model=model
        )
        out[name] = counter((90, rate))
    return out


def model_thrash(config: StackConfig) -> list[Case]:
    threshold = config.monitoring.alerts.model_loads_per_hour
    # Two models evicting each other on ollama-1: 15 loads an hour each, 30 together.
    # Both replicas count every load (their own and the ones they see in /api/ps).
    thrash = _loads(gw1_ollama1_m1=0.25, gw1_ollama1_m2=0.25,
                    gw2_ollama1_m1=0.25, gw2_ollama1_m2=0.25)  # fmt: skip
    fired = (
        [Firing({**STACK_LABELS, "ollama_instance": OLLAMA_1, "severity": "warning"}, 30)]
        if threshold < 30
        else []
    )
    return [
        # 15 loads in the first half hour: not (yet) above the threshold.
        Case("two models evicting each other", thrash, [Check("30m"), Check("80m", fired)]),
        Case(
            "a cold start every 5 minutes is no thrash",
            _loads(gw1_ollama1_m1=0.2, gw2_ollama1_m1=0.2),
            [Check("80m")],
        ),
        Case(
            "loads spread over two instances",
            _loads(gw1_ollama1_m1=0.25, gw1_ollama2_m2=0.25),
            [Check("80m")],
        ),
    ]


def nginx_down(config: StackConfig) -> list[Case]:
    nginx_up = series("nginx_up", job="nginx", instance=NGINX_EXPORTER)
    labels = {**STACK_LABELS, "job": "nginx", "instance": NGINX_EXPORTER}
    return [
        Case("stub_status unreadable", {nginx_up: "0x30"},
             [Check("20m", [Firing({**labels, "severity": "critical"}, 0)])]),
        Case("nginx up", {nginx_up: "1x30"}, [Check("20m")]),
    ]  # fmt: skip


def nginx_exporter_down(config: StackConfig) -> list[Case]:
    up = series("up", job="nginx", instance=NGINX_EXPORTER)
    labels = {**STACK_LABELS, "job": "nginx", "instance": NGINX_EXPORTER}
    return [
        Case("exporter unreachable", {up: "0x30"},
             [Check("20m", [Firing({**labels, "severity": "warning"}, 0)])]),
        Case("exporter up", {up: "1x30"}, [Check("20m")]),
    ]  # fmt: skip


CASES: dict[str, Callable[[StackConfig], list[Case]]] = {
    "LLMGatewayDown": gateway_down,
    "LLMGatewayReplicaDown": gateway_replica_down,
    "LLMUpstreamDown": upstream_down,
    "LLMUpstreamHealthUnknown": upstream_health_unknown,
    "LLMHighErrorRatio": high_error_ratio,
    "LLMHighLatencyP95": high_latency_p95,
    "LLMCacheHitRatioCollapse": cache_hit_ratio_collapse,
    "LLMRedisUnreachable": redis_unreachable,
    "LLMRequestsShed": requests_shed,
    "LLMOllamaInstanceDown": ollama_instance_down,
    "LLMModelThrash": model_thrash,
    "LLMNginxDown": nginx_down,
    "LLMNginxExporterDown": nginx_exporter_down,
}


# promtool evaluates every rule at every step up to the last eval_time: a day of
# history at 1m steps takes seconds, at 5m steps a fifth of that. `for:` still holds
# (pending at one step, firing 5m later); inputs stay at 1m so each rate window has
# several samples.
EVALUATION_INTERVAL = {"LLMCacheHitRatioCollapse": "5m"}


def promtool_tests(rule: dict[str, Any], cases: Iterable[Case], rules_file: str) -> dict[str, Any]:
    """A `promtool test rules` document for one alerting rule."""
    name = rule["alert"]
    evaluation_interval = EVALUATION_INTERVAL.get(name, "1m")
    annotations: dict[str, str] = rule.get("annotations", {})
    rule_labels: dict[str, str] = rule.get("labels", {})
    tests = []
    for case in cases:
        checks = []
        for check in case.checks:
            expected = []
            for firing in check.firing:
                # $labels in templates are the expression's labels, not the rule's.
                expr_labels = {k: v for k, v in firing.labels.items() if k not in rule_labels}
                expected.append(
                    {
                        "exp_labels": firing.labels,
                        "exp_annotations": {
                            key: expand(text, expr_labels, firing.value)
                            for key, text in annotations.items()
                        },
                    }
                )
            checks.append({"eval_time": check.eval_time, "alertname": name, "exp_alerts": expected})
        tests.append(
            {
                "name": f"{name}: {case.name}",
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": checks,
            }
        )
    return {"rule_files": [rules_file], "evaluation_interval": evaluation_interval, "tests": tests}
