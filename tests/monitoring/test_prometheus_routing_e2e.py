"""A model-aware gateway routing to an emulated Ollama and to a dead one, scraped by the
real Prometheus with the rendered config and rules.

What only a live run shows: the gateway's `instance` label (an Ollama instance) clashes
with the target's and must arrive as `ollama_instance`; the Routing row's queries have
data; LLMOllamaInstanceDown goes pending for the dead instance and names it.
The queue holds one request and each instance takes one at a time, so a burst of four
slow requests is one answered at once, one queued and two shed (queue_full).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from llm_monitoring.dashboards import build_dashboards
from llm_monitoring.jobs import OLLAMA_INSTANCE

from tests.monitoring.prometheus_server import PrometheusServer
from tests.monitoring.stacks import SERVICE, STACK, stack_config
from tests.support.emulator import Emulator
from tests.support.gateway import GatewayProcess, metric_value
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

MODEL = "llama3.2:1b"
GW = 'job="llm-gateway"'
BURST = 4
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h"}


def _generate(prompt: str) -> dict[str, object]:
    return {"model": MODEL, "prompt": prompt, "stream": False}


@dataclass
class Routed:
    gateway: GatewayProcess
    prometheus: PrometheusServer
    live: str  # the emulator, as the router names it (host:port)
    dead: str  # a port nothing listens on
    burst: list[int]  # statuses of the concurrent burst


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Routed]:
    workdir = tmp_path_factory.mktemp("monitoring-routing")
    emulator = Emulator(workdir, tokens=4, first_token_delay=1.0).start()
    dead = f"127.0.0.1:{free_port()}"
    gateway = GatewayProcess(
        workdir,
        {
            "GATEWAY_ROUTING": "model-aware",
            "GATEWAY_OLLAMA_INSTANCES": f"{emulator.url},http://{dead}",
            "GATEWAY_UPSTREAM_URL": emulator.url,
            "GATEWAY_REDIS_URL": redis_server.url,
            "GATEWAY_CACHE_MODE": "off",  # every request goes to the router
            "GATEWAY_NUM_PARALLEL": "1",
            "GATEWAY_QUEUE_MAX_DEPTH": "1",
            "GATEWAY_POLL_SECONDS": "0.5",
            "GATEWAY_CONNECT_TIMEOUT_SECONDS": "0.5",
        },
    )
    prometheus: PrometheusServer | None = None
    try:
        gateway.start()
        config = stack_config(
            replicas=1, instances=2, routing="model-aware", scrape_interval_seconds=1,
            forMinutes=1,
        )  # fmt: skip
        prometheus = PrometheusServer(workdir, config, gateways=[f"127.0.0.1:{gateway.port}"])
        prometheus.start()
        prometheus.wait_for_value(f"up{{{GW}}}", 1)
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            # The first request loads the model on the live instance.
            first = client.post("/api/generate", json=_generate("load"))
            assert first.status_code == 200, first.text

            def send(i: int) -> int:
                return client.post("/api/generate", json=_generate(f"burst {i}")).status_code

            with ThreadPoolExecutor(BURST) as pool:
                burst = list(pool.map(send, range(BURST)))
        live = emulator.url.removeprefix("http://")
        yield Routed(gateway, prometheus, live, dead, burst)
    finally:
        if prometheus is not None:
            prometheus.stop()
        gateway.stop()
        emulator.stop()


def test_the_burst_was_queued_and_shed(routed: Routed) -> None:
    # The scenario itself: two answered (one at once, one after waiting), two shed.
    assert sorted(routed.burst) == [200, 200, 503, 503], routed.burst
    exposed = routed.gateway.metrics()
    assert metric_value(exposed, "llm_shed_total", reason="queue_full") == 2


def test_the_ollama_instance_arrives_as_ollama_instance(routed: Routed) -> None:
    prometheus = routed.prometheus
    up = f"llm_instance_up{{{GW}, {OLLAMA_INSTANCE}=%s}}"
    prometheus.wait_for_value(up % f'"{routed.live}"', 1)
    prometheus.wait_for_value(up % f'"{routed.dead}"', 0)
    (series, *_) = prometheus.query(f"llm_instance_up{{{GW}}}")
    # The target's `instance` (the gateway replica) is untouched...
    assert series["metric"]["instance"] == f"127.0.0.1:{routed.gateway.port}"
    # ...and nothing is left under Prometheus's clash name.
    assert prometheus.query(f'{{{GW}, exported_instance!=""}}') == []
    loads = f'llm_model_loads_total{{{GW}, {OLLAMA_INSTANCE}="{routed.live}", model="{MODEL}"}}'
    prometheus.wait_for_value(loads, 1)


def test_routing_panels_have_live_data(routed: Routed) -> None:
    prometheus = routed.prometheus
    prometheus.wait_for_value(f'sum(llm_shed_total{{{GW}, reason="queue_full"}})', 2)
    prometheus.wait_for_value(f"sum(llm_queue_wait_seconds_count{{{GW}}})", 3)
    empty = []
    for text in build_dashboards(prometheus.config).values():
        for panel in json.loads(text)["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                # api() asserts status "success": the query parsed and evaluated.
                if not prometheus.api("query", query=expr)["result"]:
                    empty.append(panel["title"])
    for title in (
        "Queue depth by model and priority",
        "Queue wait p50 / p95 by model and priority",
        "Requests shed per minute by reason and priority",
        "Shed ratio (of requests that needed a model)",
        "Ollama instances up (router's view)",
        "In-flight requests by instance and model",
        "Models loaded by instance",
        "Model loads in the selected range",
    ):
        assert title not in empty, empty


def test_instance_down_goes_pending_for_the_dead_instance(routed: Routed) -> None:
    prometheus = routed.prometheus

    def instance_down() -> list[dict[str, str]]:
        return [
            a["labels"]
            for a in prometheus.api("alerts")["alerts"]
            if a["labels"]["alertname"] == "LLMOllamaInstanceDown"
        ]

    prometheus.wait_for(lambda: bool(instance_down()))
    (labels,) = instance_down()
    assert labels[OLLAMA_INSTANCE] == routed.dead
    assert labels["service"] == SERVICE
    assert labels["stack"] == STACK
    assert "instance" not in labels  # summed over replicas: the stack's alert
