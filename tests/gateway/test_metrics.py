"""The gateway's /metrics and access log, read from real processes."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory, GatewayProcess, metric_value
from tests.support.redis_server import RedisServer

GREEDY = {"temperature": 0}


def promtool_check(exposition: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (apt-get install prometheus)"
    result = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True,
                            text=True, timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_metrics_count_what_clients_saw(
    client: httpx.Client, gateway: GatewayProcess, emulator: Emulator
) -> None:
    before = client.get("/metrics").text
    body = {"model": "llama3.2", "prompt": "count me", "options": GREEDY}
    miss = client.post("/api/generate", json=body)
    hit = client.post("/api/generate", json={**body, "stream": False})
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    tokens = hit.json()["eval_count"]
    client.post("/api/generate", json={"model": "unheard-of", "prompt": "x"})
    exposition = client.get("/metrics").text
    promtool_check(exposition)

    def delta(name: str, **labels: str) -> float:
        return metric_value(exposition, name, **labels) - metric_value(before, name, **labels)

    assert delta("llm_requests_total", model="llama3.2", endpoint="generate", status="200") == 2
    assert delta("llm_requests_total", model="other", endpoint="generate", status="404") == 1
    assert delta("llm_cache_hits_total", model="llama3.2", endpoint="generate") == 1
    assert delta("llm_cache_misses_total", model="llama3.2", endpoint="generate") == 1
    assert delta("llm_tokens_generated_total", model="llama3.2") == tokens
    assert delta("llm_prompt_tokens_total", model="llama3.2") > 0
    assert delta("llm_request_duration_seconds_count", model="llama3.2", cache="HIT") == 1
    assert delta("llm_time_to_first_token_seconds_count", model="llama3.2") == 2
    assert delta("llm_generation_tokens_per_second_count", model="llama3.2") == 1
    assert delta("llm_gateway_overhead_seconds_count", endpoint="generate") == 2
    assert metric_value(exposition, "llm_in_flight_requests") == 0  # all answered
    assert metric_value(exposition, "llm_upstream_up") == 1
    # Known models start at zero, so rate() sees their first request.
    assert 'llm_cache_hits_total{endpoint="chat",model="llama3.1:8b"} 0.0' in exposition


def test_access_log_line_per_request(client: httpx.Client, gateway: GatewayProcess) -> None:
    client.post("/api/chat", headers={"X-Request-ID": "log-me-1"},
                json={"model": "llama3.2", "messages": [{"role": "user", "content": "secret"}],
                      "options": GREEDY, "stream": False})  # fmt: skip
    deadline = time.monotonic() + 3
    while not any(line.get("request_id") == "log-me-1" for line in gateway.access_log()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    line = next(line for line in gateway.access_log() if line.get("request_id") == "log-me-1")
    assert {"time", "request_id", "key", "model", "endpoint", "status", "cache", "duration_ms",
            "ttft_ms", "prompt_tokens", "tokens"} <= set(line)  # fmt: skip
    assert line["tokens"] > 0
    assert line["cache"] == "MISS"
    assert "secret" not in str(line)


def test_prompts_are_logged_only_when_enabled(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    gateway = gateway_factory(GATEWAY_UPSTREAM_URL=emulator.url, GATEWAY_REDIS_URL=redis_server.url,
                              GATEWAY_LOG_PROMPTS="true")  # fmt: skip
    httpx.post(
        f"{gateway.url}/api/generate", json={"model": "llama3.2", "prompt": "log this prompt"}
    )
    deadline = time.monotonic() + 3
    while not any(line.get("prompt") == "log this prompt" for line in gateway.access_log()):
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_metrics_are_whole_with_several_worker_processes(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    shared = tmp_path / "prometheus-multiproc"
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url, GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(shared),
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:  # both workers up
        try:
            if httpx.get(f"{gateway.url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for i in range(40):
        # New connections spread over the workers (the kernel hands each to one).
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            body = {"model": "llama3.2", "prompt": f"w{i}", "stream": False}
            assert http.post("/api/generate", json=body).status_code == 200
    writers = {path.name.rsplit("_", 1)[-1] for path in shared.glob("counter_*.db")}
    assert len(writers) == 2, f"requests were not spread over both workers: {writers}"
    readings = set()
    for _ in range(6):  # whichever worker answers, it reports all of them
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            exposition = http.get("/metrics").text
        readings.add(
            metric_value(exposition, "llm_requests_total", endpoint="generate", status="200")
        )
    assert readings == {40}
    promtool_check(exposition)
