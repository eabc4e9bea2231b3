"""Real faults: Redis dies mid-run, Ollama fails or hangs, the gateway is told to stop."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import orjson

from tests.support.emulator import Emulator, EmulatorFactory
from tests.support.gateway import GatewayFactory, GatewayProcess, metric_value
from tests.support.redis_server import RedisServer

GREEDY = {"temperature": 0}


def test_redis_stopped_in_the_middle_of_200_requests_fails_none(
    gateway_factory: GatewayFactory, emulator: Emulator, own_redis: RedisServer
) -> None:
    gateway = gateway_factory(GATEWAY_UPSTREAM_URL=emulator.url, GATEWAY_REDIS_URL=own_redis.url)
    verdicts: list[str] = []
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for i in range(200):
            if i == 60:
                own_redis.stop()
            if i == 140:
                own_redis.start()
                time.sleep(0.3)  # the gateway retries Redis 0.2 s after a failure (test setting)
            body = {"model": "llama3.2", "prompt": f"q{i % 20}", "options": GREEDY, "stream": False}
            response = http.post("/api/generate", json=body)
            assert response.status_code == 200, (i, response.text)
            assert response.json()["done"] is True
            verdicts.append(response.headers["x-cache"])
    assert "HIT" in verdicts[:60]
    assert set(verdicts[61:139]) == {"BYPASS"}
    assert "HIT" in verdicts[150:], "hits did not resume once Redis was back"
    assert metric_value(gateway.metrics(), "llm_redis_errors_total") >= 1


def test_a_hanging_redis_costs_a_bounded_delay_not_a_failure(
    gateway_factory: GatewayFactory, emulator: Emulator, own_redis: RedisServer
) -> None:
    gateway = gateway_factory(GATEWAY_UPSTREAM_URL=emulator.url, GATEWAY_REDIS_URL=own_redis.url,
                              GATEWAY_REDIS_TIMEOUT_SECONDS="0.2")  # fmt: skip
    body = {"model": "llama3.2", "prompt": "frozen", "options": GREEDY, "stream": False}
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        http.post("/api/generate", json=body)
        assert http.post("/api/generate", json=body).headers["x-cache"] == "HIT"
        own_redis.pause()
        try:
            slowest = 0.0
            for _ in range(20):
                started = time.monotonic()
                response = http.post("/api/generate", json=body)
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 200
                assert response.headers["x-cache"] == "BYPASS"
            assert slowest < 1.5  # one Redis timeout (0.2 s), never a pile of them
        finally:
            own_redis.resume()
        time.sleep(0.3)
        verdicts = [http.post("/api/generate", json=body).headers["x-cache"] for _ in range(5)]
        assert "HIT" in verdicts


def test_stale_if_error_then_503_after_the_stale_window(
    gateway_factory: GatewayFactory, emulator_factory: EmulatorFactory, redis_server: RedisServer
) -> None:
    upstream = emulator_factory()
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=upstream.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_CACHE_TTL_SECONDS="1",
        GATEWAY_CACHE_STALE_SECONDS="2",
    )
    body = {"model": "llama3.2", "prompt": "stale me", "options": GREEDY, "stream": False}
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        fresh = http.post("/api/generate", json=body)
        assert fresh.headers["x-cache"] == "MISS"
        time.sleep(1.2)  # past the TTL, inside the stale window
        upstream.faults(fail_next=1)
        stale = http.post("/api/generate", json=body)
        assert stale.status_code == 200
        assert stale.headers["x-cache"] == "STALE"
        assert int(stale.headers["age"]) >= 1
        assert stale.content == fresh.content
        upstream.stop()
        refused = http.post("/api/generate", json=body)
        assert refused.headers["x-cache"] == "STALE"  # refused connection: stale too
        streamed = http.post("/api/generate", json={**body, "stream": True})
        assert streamed.headers["x-cache"] == "STALE"
        assert orjson.loads(streamed.content.splitlines()[-1])["done"] is True
        time.sleep(2.2)  # past TTL + stale window: the entry is gone
        gone = http.post("/api/generate", json=body)
        assert gone.status_code == 503
        assert gone.headers["retry-after"]
        assert "upstream unreachable" in gone.json()["error"]
        exposition = http.get("/metrics").text
    assert metric_value(exposition, "llm_stale_served_total") == 3
    assert metric_value(exposition, "llm_upstream_errors_total", reason="connect") >= 1


def bounded_gateway(
    factory: GatewayFactory, emulator: Emulator, redis: RedisServer, idle: str, total: str
) -> GatewayProcess:
    """A gateway in front of `emulator` that waits 1 s at most for a response head."""
    return factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis.url,
        GATEWAY_FIRST_BYTE_TIMEOUT_SECONDS="1",
        GATEWAY_IDLE_TIMEOUT_SECONDS=idle,
        GATEWAY_TOTAL_TIMEOUT_SECONDS=total,
    )


def test_hanging_upstream_times_out_within_the_bound(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    gateway = bounded_gateway(gateway_factory, emulator, redis_server, idle="0.5", total="900")
    emulator.faults(hang_next=1)
    started = time.monotonic()
    hung = httpx.post(
        f"{gateway.url}/api/generate", json={"model": "llama3.2", "prompt": "x"}, timeout=30
    )
    elapsed = time.monotonic() - started
    assert hung.status_code == 504
    assert "no response within 1s" in hung.json()["error"]
    assert 0.9 < elapsed < 5
    # A stream that stalls mid-way ends with Ollama's error line, and is not cached.
    emulator.configure(tokens=4, token_delay=1.5)
    stall = {"model": "llama3.2", "prompt": "stall", "options": GREEDY}
    stalled = httpx.post(f"{gateway.url}/api/generate", json=stall, timeout=30)
    assert stalled.status_code == 200
    last = orjson.loads(stalled.content.splitlines()[-1])
    assert "sent nothing for" in last["error"]
    deadline = time.monotonic() + 3
    while emulator.stats()["cancelled"] < 2:  # both abandoned upstream calls were closed
        assert time.monotonic() < deadline, emulator.stats()
        time.sleep(0.05)
    assert metric_value(gateway.metrics(), "llm_upstream_errors_total", reason="timeout") == 2


def test_ready_reports_upstream_and_redis(
    gateway_factory: GatewayFactory, emulator_factory: EmulatorFactory, own_redis: RedisServer
) -> None:
    upstream = emulator_factory()
    gateway = gateway_factory(GATEWAY_UPSTREAM_URL=upstream.url, GATEWAY_REDIS_URL=own_redis.url)
    ready = httpx.get(f"{gateway.url}/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "upstream": "ok",
        "redis": "ok",
        "cache_redis": "shared",
    }
    own_redis.stop()
    degraded = httpx.get(f"{gateway.url}/ready")
    assert degraded.status_code == 200  # still serving, uncached
    assert degraded.json()["redis"] == "unavailable"
    upstream.stop()
    down = httpx.get(f"{gateway.url}/ready")
    assert down.status_code == 503
    assert "unreachable" in down.json()["upstream"]
    assert httpx.get(f"{gateway.url}/health").json() == {"status": "ok"}


def test_sigterm_lets_the_stream_finish_then_exits_0(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_SHUTDOWN_GRACE_SECONDS="20",
    )
    emulator.configure(tokens=10, token_delay=0.2)
    chunks: list[dict[str, object]] = []
    first_chunk = threading.Event()

    def stream() -> None:
        body = {"model": "llama3.2", "prompt": "finish me", "options": GREEDY}
        with httpx.stream("POST", f"{gateway.url}/api/generate", json=body, timeout=30) as response:
            for line in response.iter_lines():
                if line:
                    chunks.append(orjson.loads(line))
                    first_chunk.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert first_chunk.wait(10)
    gateway.process.signal(signal.SIGTERM)
    time.sleep(0.3)
    try:  # no new work is accepted while draining
        refused = httpx.get(f"{gateway.url}/health", timeout=2).status_code != 200
    except httpx.HTTPError:
        refused = True
    assert refused
    reader.join(15)
    assert chunks[-1]["done"] is True
    assert len(chunks) == 11
    proc = gateway.process.proc
    assert proc is not None
    assert proc.wait(10) == 0


def test_a_stream_that_keeps_coming_is_still_cut_at_the_total_bound(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    gateway = bounded_gateway(gateway_factory, emulator, redis_server, idle="1", total="1.5")
    # 40 tokens 0.1 s apart: never idle for a second, but 4 s in all.
    emulator.configure(tokens=40, token_delay=0.1)
    body = {"model": "llama3.2", "prompt": "long", "options": GREEDY}
    started = time.monotonic()
    cut = httpx.post(f"{gateway.url}/api/generate", json=body, timeout=30)
    assert cut.status_code == 200
    assert time.monotonic() - started < 3
    lines = [orjson.loads(line) for line in cut.content.splitlines()]
    assert "total time limit (1.5s)" in lines[-1]["error"]
    assert 5 <= len(lines) - 1 < 40  # tokens relayed until the cut
    again = httpx.post(f"{gateway.url}/api/generate", json=body, timeout=30)
    assert again.headers["x-cache"] == "MISS"  # the cut answer was not cached
    assert metric_value(gateway.metrics(), "llm_upstream_errors_total", reason="timeout") >= 1
