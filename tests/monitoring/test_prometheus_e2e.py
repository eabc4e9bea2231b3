"""The real Prometheus, run with the rendered config and rules, scraping a real gateway.

The upstream here is a closed port: every LLM request fails with 503 and the gateway
reports Ollama down. That exercises counters, histograms, target labels, rule
evaluation (LLMUpstreamDown goes pending) and every dashboard query against live data.
One Prometheus serves the whole module: it takes ~5 s to apply its first targets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from llm_monitoring.dashboards import build_dashboards
from llm_monitoring.rules import GROUP_NAME

from tests.monitoring.prometheus_server import PrometheusServer
from tests.monitoring.stacks import SERVICE, STACK, stack_config
from tests.support.gateway import GatewayProcess, metric_value
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

GENERATE = {"model": "llama3.2:1b", "prompt": "hi", "stream": False}
CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "stream": False}
GW = 'job="llm-gateway"'


@dataclass
class Scenario:
    gateway: GatewayProcess
    prometheus: PrometheusServer
    statuses: list[int]


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[Scenario]:
    workdir = tmp_path_factory.mktemp("monitoring-e2e")
    gateway = GatewayProcess(
        workdir,
        {
            "GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens
            "GATEWAY_REDIS_URL": redis_server.url,
            "GATEWAY_CONNECT_TIMEOUT_SECONDS": "0.5",
        },
    ).start()
    config = stack_config(replicas=1, scrape_interval_seconds=1, forMinutes=1)
    prometheus = PrometheusServer(workdir, config, gateways=[f"127.0.0.1:{gateway.port}"])
    try:
        prometheus.start()
        prometheus.wait_for_value(f"up{{{GW}}}", 1)
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            # A labelled counter appears at its first increment; let Prometheus see it
            # once, or rate() has no earlier sample to measure the rest against.
            statuses = [client.post("/api/generate", json=GENERATE).status_code]
            prometheus.wait_for_value(f'sum(llm_requests_total{{{GW}, endpoint="generate"}})', 1)
            statuses += [client.post("/api/generate", json=GENERATE).status_code for _ in range(4)]
            statuses += [client.post("/api/chat", json=CHAT).status_code for _ in range(3)]
        yield Scenario(gateway, prometheus, statuses)
    finally:
        prometheus.stop()
        gateway.stop()


def test_prometheus_scrapes_the_gateway_with_stack_labels(scenario: Scenario) -> None:
    targets = scenario.prometheus.api("targets", state="active")["activeTargets"]
    by_job = {t["labels"]["job"]: t for t in targets}
    assert set(by_job) == {"llm-gateway", "prometheus"}
    gateway = by_job["llm-gateway"]
    assert gateway["health"] == "up"
    assert gateway["labels"]["instance"] == f"127.0.0.1:{scenario.gateway.port}"
    assert gateway["labels"]["service"] == SERVICE
    assert gateway["labels"]["stack"] == STACK
    assert gateway["scrapeUrl"].endswith("/metrics")
    scenario.prometheus.wait_for_value('up{job="prometheus"}', 1)


def test_counters_reach_prometheus(scenario: Scenario) -> None:
    prometheus = scenario.prometheus
    assert set(scenario.statuses) == {503}, scenario.statuses
    generate = f'{GW}, endpoint="generate", status="503"'
    prometheus.wait_for_value(f"sum(llm_requests_total{{{generate}}})", 5)
    prometheus.wait_for_value(f'sum(llm_requests_total{{{GW}, endpoint="chat"}})', 3)
    prometheus.wait_for_value(f'sum(llm_upstream_errors_total{{{GW}, reason="connect"}})', 8)
    # What the dashboards plot: a request rate by model, and a 5xx ratio of 100%.
    assert prometheus.query(f"sum by (model) (rate(llm_requests_total{{{GW}}}[1m]))")
    ratio = prometheus.value(
        f'sum(rate(llm_requests_total{{{GW}, status=~"5.."}}[1m]))'
        f" / sum(rate(llm_requests_total{{{GW}}}[1m]))"
    )
    assert ratio == pytest.approx(1.0)


def test_histograms_reach_prometheus(scenario: Scenario) -> None:
    prometheus = scenario.prometheus
    generate = f'{GW}, endpoint="generate"'
    prometheus.wait_for_value(f"sum(llm_request_duration_seconds_count{{{generate}}})", 5)
    bucket = f"sum(llm_request_duration_seconds_bucket{{{generate}, le=%s}})"
    assert prometheus.value(bucket % '"+Inf"') == 5
    # A refused connection answers fast: all five within half a second.
    assert prometheus.value(bucket % '"0.5"') == 5
    scraped_sum = prometheus.value(f"sum(llm_request_duration_seconds_sum{{{generate}}})")
    exposed = metric_value(
        scenario.gateway.metrics(), "llm_request_duration_seconds_sum", endpoint="generate"
    )
    assert scraped_sum == pytest.approx(exposed)
    assert 0 < exposed < 5 * 0.5


def test_rules_evaluate_and_upstream_down_goes_pending(scenario: Scenario) -> None:
    prometheus = scenario.prometheus
    prometheus.wait_for_value(f"llm_upstream_up{{{GW}}}", 0)

    def evaluated() -> bool:
        (group,) = [g for g in prometheus.api("rules")["groups"] if g["name"] == GROUP_NAME]
        # Health "ok" after evaluation against live series; a vector-matching mistake
        # (many-to-many, say) would show as "err" here and nowhere else.
        return bool(group["rules"]) and all(r["health"] == "ok" for r in group["rules"])

    prometheus.wait_for(evaluated)

    def upstream_down() -> bool:
        return any(
            a["labels"]["alertname"] == "LLMUpstreamDown"
            and a["state"] in {"pending", "firing"}
            and a["labels"]["severity"] == "critical"
            and a["labels"]["stack"] == STACK
            and a["labels"]["service"] == SERVICE
            for a in prometheus.api("alerts")["alerts"]
        )

    prometheus.wait_for(upstream_down)
    names = {a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"]}
    # The gateway is up and reports upstream health: these stay quiet.
    assert not names & {"LLMGatewayDown", "LLMUpstreamHealthUnknown"}, names


def test_every_dashboard_query_runs_on_live_data(scenario: Scenario) -> None:
    prometheus = scenario.prometheus
    prometheus.wait_for_value(f'sum(llm_requests_total{{{GW}, endpoint="generate"}})', 5)
    empty = []
    for text in build_dashboards(prometheus.config).values():
        for panel in json.loads(text)["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "1m")
                expr = expr.replace("$__range", "1h")
                # api() asserts status "success": the query parsed and evaluated.
                data = prometheus.api("query", query=expr)
                if not data["result"]:
                    empty.append(panel["title"])
    # Panels fed by what this scenario produced have data.
    for title in ("Requests per minute by model", "Errors by reason", "Ollama reachable"):
        assert title not in empty, empty
