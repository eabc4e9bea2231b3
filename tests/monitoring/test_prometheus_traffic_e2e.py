"""The full path: client -> real gateway -> emulated Ollama, with a real Redis cache,
scraped by the real Prometheus running the rendered config.

Prometheus must end up with exactly what the gateway counted: requests, cache hits and
misses (as the clients saw them in X-Cache), tokens, and the histograms.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from llm_monitoring import promql

from tests.monitoring.prometheus_server import PrometheusServer
from tests.monitoring.stacks import stack_config
from tests.support.emulator import Emulator
from tests.support.gateway import GatewayProcess, metric_value
from tests.support.redis_server import RedisServer

MODEL = "llama3.2:1b"
TOKENS = 8
FIRST_TOKEN_DELAY = 0.1
GW = 'job="llm-gateway"'


def _generate(prompt: str, stream: bool = False) -> dict[str, object]:
    # temperature 0: deterministic, so the gateway caches it (cacheMode deterministic).
    options = {} if stream else {"temperature": 0}
    return {"model": MODEL, "prompt": prompt, "stream": stream, "options": options}


@dataclass
class Traffic:
    gateway: GatewayProcess
    prometheus: PrometheusServer
    # X-Cache of every answer, and of the answers after the warm-up.
    cache: Counter[str]
    cache_after_warmup: Counter[str]
    exposition: str  # the gateway's /metrics once the traffic was done


@pytest.fixture(scope="module")
def traffic(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[Traffic]:
    workdir = tmp_path_factory.mktemp("monitoring-traffic")
    emulator = Emulator(workdir, tokens=TOKENS, first_token_delay=FIRST_TOKEN_DELAY).start()
    gateway = GatewayProcess(
        workdir,
        {
            "GATEWAY_UPSTREAM_URL": emulator.url,
            "GATEWAY_REDIS_URL": redis_server.url,
            "GATEWAY_CACHE_MODE": "deterministic",
        },
    )
    prometheus: PrometheusServer | None = None
    try:
        gateway.start()
        config = stack_config(replicas=1, scrape_interval_seconds=1, forMinutes=1)
        prometheus = PrometheusServer(workdir, config, gateways=[f"127.0.0.1:{gateway.port}"])
        prometheus.start()
        prometheus.wait_for_value(f"llm_upstream_up{{{GW}}}", 1)
        cache: Counter[str] = Counter()
        with httpx.Client(base_url=gateway.url, timeout=30) as client:

            def send(body: dict[str, object]) -> None:
                response = client.post("/api/generate", json=body)
                assert response.status_code == 200, response.text
                cache[response.headers.get("X-Cache", "")] += 1

            # Warm-up: a miss and a hit, so both cache counters exist before Prometheus
            # measures rates (a labelled counter appears only at its first increment).
            send(_generate("warm-up"))
            send(_generate("warm-up"))
            hits, misses = "llm_cache_hits_total", "llm_cache_misses_total"
            prometheus.wait_for_value(f"sum({hits}{{{GW}}})", cache["HIT"])
            prometheus.wait_for_value(f"sum({misses}{{{GW}}})", cache["MISS"])
            warm = Counter(cache)
            for prompt in ("a", "b", "c", "d"):
                for _ in range(3):
                    send(_generate(prompt))
            for prompt in ("s1", "s2"):
                send(_generate(prompt, stream=True))
        exposition = gateway.metrics()
        yield Traffic(gateway, prometheus, cache, cache - warm, exposition)
    finally:
        if prometheus is not None:
            prometheus.stop()
        gateway.stop()
        emulator.stop()


def _exposed(traffic: Traffic, name: str, **labels: str) -> float:
    return metric_value(traffic.exposition, name, **labels)


def test_clients_saw_hits_and_misses(traffic: Traffic) -> None:
    # The scenario itself: repeated deterministic prompts hit, fresh ones miss.
    assert traffic.cache_after_warmup["HIT"] == 8, traffic.cache
    assert traffic.cache_after_warmup["MISS"] == 4, traffic.cache


def test_request_and_cache_counters_match_what_clients_saw(traffic: Traffic) -> None:
    prometheus = traffic.prometheus
    total = sum(traffic.cache.values())
    prometheus.wait_for_value(
        f'sum(llm_requests_total{{{GW}, endpoint="generate", status="200"}})', total
    )
    assert prometheus.value(f'sum(llm_requests_total{{{GW}, model="{MODEL}"}})') == total
    assert prometheus.value(f"sum(llm_cache_hits_total{{{GW}}})") == traffic.cache["HIT"]
    assert prometheus.value(f"sum(llm_cache_misses_total{{{GW}}})") == traffic.cache["MISS"]


def test_histograms_match_the_gateway(traffic: Traffic) -> None:
    prometheus = traffic.prometheus
    total = sum(traffic.cache.values())
    prometheus.wait_for_value(f"sum(llm_request_duration_seconds_count{{{GW}}})", total)
    for cache, seen in traffic.cache.items():
        count = f'sum(llm_request_duration_seconds_count{{{GW}, cache="{cache}"}})'
        assert prometheus.value(count) == seen, cache
    # Every miss waited for the emulator's first token (0.1 s): none in the 0.05 bucket.
    fast_misses = f'sum(llm_request_duration_seconds_bucket{{{GW}, cache="MISS", le="0.05"}})'
    assert prometheus.value(fast_misses) == 0
    for name in (
        "llm_request_duration_seconds_sum",
        "llm_time_to_first_token_seconds_count",
        "llm_time_to_first_token_seconds_sum",
        "llm_upstream_duration_seconds_count",
        "llm_generation_tokens_per_second_count",
    ):
        exposed = _exposed(traffic, name)
        assert exposed > 0, name
        assert prometheus.value(f"sum({name}{{{GW}}})") == pytest.approx(exposed), name


def test_tokens_match_the_gateway(traffic: Traffic) -> None:
    prometheus = traffic.prometheus
    generated = _exposed(traffic, "llm_tokens_generated_total", model=MODEL)
    # Each upstream call (misses and the uncached streams) generated TOKENS tokens.
    upstream_calls = traffic.cache["MISS"] + traffic.cache["BYPASS"]
    assert generated == upstream_calls * TOKENS, traffic.cache
    prometheus.wait_for_value(
        f'sum(llm_tokens_generated_total{{{GW}, model="{MODEL}"}})', generated
    )
    prompt = _exposed(traffic, "llm_prompt_tokens_total", model=MODEL)
    assert prometheus.value(f"sum(llm_prompt_tokens_total{{{GW}}})") == prompt


def test_hit_ratio_as_alerts_and_dashboards_compute_it(traffic: Traffic) -> None:
    prometheus = traffic.prometheus
    prometheus.wait_for_value(f"sum(llm_cache_hits_total{{{GW}}})", traffic.cache["HIT"])
    # Over a window that covers the whole run, rate() sees the increases after the
    # warm-up (each series' first sample is its baseline). It extrapolates each series
    # to the window's edges by its own sample times, so a few-second-old pair of
    # series is only close to the exact ratio.
    hits, misses = traffic.cache_after_warmup["HIT"], traffic.cache_after_warmup["MISS"]
    ratio = prometheus.value(promql.cache_hit_ratio("10m", ""))
    assert ratio == pytest.approx(hits / (hits + misses), abs=0.1)


def test_no_alert_while_everything_works(traffic: Traffic) -> None:
    prometheus = traffic.prometheus

    def evaluated_after_traffic() -> bool:
        # One evaluation after the last scrape of the traffic.
        return prometheus.value(f"sum(llm_cache_hits_total{{{GW}}})") == traffic.cache["HIT"]

    prometheus.wait_for(evaluated_after_traffic)
    alerts = prometheus.api("alerts")["alerts"]
    assert alerts == [], alerts
