"""The whole request path of `llm-stack local up`, as a client sees it:

client --TLS--> nginx edge --> gateway x2 --> nginx balancer --> Ollama emulator x2,
with Redis caching and Prometheus scraping the gateways and the nginx exporter.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e.traffic import LIMITED_KEY, LIMITED_KEY_RPM, MODEL, RunningStack, generate_body, poll
from tests.support.gateway import metric_value

FIRST_TOKEN_DELAY = 0.2
STREAM_TOKENS = 10
TOKEN_DELAY = 0.1


@pytest.fixture
def slow_first_token(stack: RunningStack) -> Iterator[None]:
    stack.configure_emulators(first_token_delay=FIRST_TOKEN_DELAY)
    yield
    stack.configure_emulators(first_token_delay=0)


@pytest.fixture
def slow_tokens(stack: RunningStack) -> Iterator[None]:
    stack.configure_emulators(tokens=STREAM_TOKENS, token_delay=TOKEN_DELAY)
    yield
    stack.configure_emulators(tokens=8, token_delay=0)


def test_second_identical_request_is_a_faster_hit_with_the_same_body(
    stack: RunningStack, source_address: str, slow_first_token: None
) -> None:
    body = generate_body()
    with stack.client(source_address) as client:
        started = time.monotonic()
        miss = client.post("/api/generate", json=body)
        miss_seconds = time.monotonic() - started
        started = time.monotonic()
        hit = client.post("/api/generate", json=body)
        hit_seconds = time.monotonic() - started
    assert miss.status_code == 200, miss.text
    assert miss.headers["x-cache"] == "MISS"
    assert miss_seconds >= FIRST_TOKEN_DELAY  # it really went to an emulator
    assert hit.status_code == 200, hit.text
    assert hit.headers["x-cache"] == "HIT"
    assert "age" in hit.headers
    assert hit.content == miss.content
    assert json.loads(hit.content)["done"] is True
    # The hit never reaches Ollama: well under half of the miss, which waited 200 ms.
    assert hit_seconds < miss_seconds / 2, (hit_seconds, miss_seconds)


def test_stream_arrives_token_by_token_through_every_hop(
    stack: RunningStack, source_address: str, slow_tokens: None
) -> None:
    arrivals: list[float] = []
    lines: list[dict[str, object]] = []
    with stack.client(source_address) as client:
        started = time.monotonic()
        body = generate_body(deterministic=False, stream=True)
        with client.stream("POST", "/api/generate", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/x-ndjson")
            buffer = b""
            for chunk in response.iter_raw():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    arrivals.append(time.monotonic() - started)
                    lines.append(json.loads(line))
    assert len(lines) == STREAM_TOKENS + 1
    assert lines[-1]["done"] is True
    assert all(line["done"] is False for line in lines[:-1])
    # ~1 s of generation: had any hop buffered, everything would arrive at once at the end.
    spread = arrivals[-1] - arrivals[0]
    assert spread >= (STREAM_TOKENS - 2) * TOKEN_DELAY, arrivals
    assert arrivals[0] < arrivals[-1] - 0.5, arrivals


def test_no_key_or_a_wrong_key_is_refused_with_401(
    stack: RunningStack, source_address: str
) -> None:
    with stack.client(source_address) as client:
        missing = client.post("/api/generate", json=generate_body(), headers={"Authorization": ""})
        wrong = client.post(
            "/api/generate", json=generate_body(), headers={"Authorization": "Bearer llmsk-nope"}
        )
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "error" in response.json()


def test_the_gateway_limits_a_key_to_its_requests_per_minute(
    stack: RunningStack, source_address: str
) -> None:
    statuses = []
    with stack.client(source_address, key=LIMITED_KEY) as client:
        for _ in range(LIMITED_KEY_RPM + 1):
            statuses.append(client.post("/api/generate", json=generate_body()))
    allowed, refused = statuses[:-1], statuses[-1]
    assert [r.status_code for r in allowed] == [200] * LIMITED_KEY_RPM
    assert allowed[0].headers["x-ratelimit-limit"] == str(LIMITED_KEY_RPM)
    assert refused.status_code == 429
    # The gateway's 429 (per key): rate headers and the key's limit in the message.
    assert refused.headers["x-ratelimit-limit"] == str(LIMITED_KEY_RPM)
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["retry-after"]) >= 1
    assert f"{LIMITED_KEY_RPM} requests per minute" in refused.json()["error"]
    # The dev key, from the same address, is not limited by another key's budget.
    with stack.client(source_address) as client:
        assert client.post("/api/generate", json=generate_body()).status_code == 200


def test_the_edge_limits_each_client_address_with_its_burst(
    stack: RunningStack, source_address: str
) -> None:
    config_burst, config_rate = 40, 20  # tests/e2e/Pulumi.e2e.yaml: edge
    results: list[httpx.Response] = []
    started = time.monotonic()

    def hammer(_: int) -> list[httpx.Response]:
        got = []
        with stack.client(source_address) as client:
            for _ in range(40):
                got.append(client.get("/health"))
                if time.monotonic() - started > 10:
                    break
        return got

    with ThreadPoolExecutor(max_workers=6) as pool:
        for batch in pool.map(hammer, range(6)):
            results.extend(batch)
    elapsed = time.monotonic() - started
    counts = Counter(r.status_code for r in results)
    assert set(counts) <= {200, 429}, counts
    assert counts[429] > 0, counts
    # The burst goes through at once; beyond it, about `rate` per second.
    assert counts[200] >= config_burst, counts
    assert counts[200] <= config_burst + 1 + config_rate * elapsed + 5, (counts, elapsed)
    refused = next(r for r in results if r.status_code == 429)
    # The edge's 429 (per client address): nginx's JSON error, no per-key rate headers.
    assert refused.json() == {"error": "rate limit exceeded, retry later"}
    assert refused.headers["retry-after"] == "1"
    assert "x-ratelimit-limit" not in refused.headers
    # Another client address has its own budget.
    with stack.client("127.0.0.250") as other:
        assert other.get("/health").status_code == 200


def test_prometheus_scrapes_every_target_and_counts_the_requests(
    stack: RunningStack, source_address: str
) -> None:
    requests = 5
    with stack.client(source_address) as client:
        for index in range(requests):
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"prometheus {index} {time.time()}"}],
                "stream": False,
                "options": {"temperature": 0},
            }
            assert client.post("/api/chat", json=body).status_code == 200

    def targets_up() -> dict[str, list[str]] | None:
        active = stack.prometheus("targets")["activeTargets"]
        by_job: dict[str, list[str]] = {}
        for target in active:
            by_job.setdefault(target["labels"]["job"], []).append(target["health"])
        expected = {"llm-gateway": ["up", "up"], "nginx": ["up"], "prometheus": ["up"]}
        return by_job if all(by_job.get(job) == up for job, up in expected.items()) else None

    poll(targets_up, 30, "gateway, nginx-exporter and prometheus targets up in Prometheus")
    # What the gateways counted (read directly) is what Prometheus reports.
    direct = sum(
        metric_value(text, "llm_requests_total", endpoint="chat", status="200")
        for text in stack.gateway_metrics()
    )
    assert direct == requests
    query = 'sum(llm_requests_total{job="llm-gateway", endpoint="chat", status="200"})'

    def scraped() -> float | None:
        result = stack.prometheus("query", query=query)["result"]
        value = float(result[0]["value"][1]) if result else None
        return value if value == requests else None

    poll(scraped, 30, f"Prometheus reports {requests} chat requests")
    nginx_up = stack.prometheus("query", query='nginx_up{job="nginx"}')["result"]
    assert [float(r["value"][1]) for r in nginx_up] == [1.0]


def test_the_printed_curl_command_works_as_pasted(stack: RunningStack) -> None:
    console = stack.process.console()
    (command,) = [
        line.strip()
        for line in console.splitlines()
        if line.strip().startswith("curl ") and "/api/generate" in line
    ]
    assert f"--cacert {stack.local['caCert']}" in command
    result = subprocess.run(
        ["/bin/sh", "-c", command + " -sS -D /dev/stderr"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1 200" in result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == MODEL
    assert answer["done"] is True


def test_the_routing_mode_is_the_one_the_stack_config_says(
    stack: RunningStack, source_address: str, request: pytest.FixtureRequest
) -> None:
    """model-aware: each gateway knows every emulator (polled /api/ps) and sent the
    request itself; least-conn: no gateway routes (the balancer does)."""
    routing = request.node.callspec.params["stack"]
    with stack.client(source_address) as client:
        body = generate_body(prompt=f"routing {time.time()}")
        assert client.post("/api/generate", json=body).status_code == 200
    metrics = stack.gateway_metrics()
    instances = [url.split("://", 1)[1] for url in stack.emulator_urls]
    for text in metrics:
        up = [metric_value(text, "llm_instance_up", ollama_instance=i) for i in instances]
        assert up == ([1.0] * len(instances) if routing == "model-aware" else [0.0, 0.0])
    in_flight_series = sum("llm_instance_in_flight{" in text for text in metrics)
    assert (in_flight_series > 0) == (routing == "model-aware")
