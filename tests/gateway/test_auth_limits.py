"""API keys and per-key limits, enforced by real gateways over a real Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from llm_gateway.contract import digest_of, mint_key

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory, GatewayProcess, metric_value
from tests.support.redis_server import RedisServer

BODY = {"model": "llama3.2", "prompt": "hi", "stream": False}


class Keys:
    def __init__(self, tmp_path: Path) -> None:
        self.team_a, self.team_b, self.expired, self.env_key = (mint_key() for _ in range(4))
        past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        self.file = tmp_path / "keys.yaml"
        self.file.write_text(
            "keys:\n"
            f"  team-a:\n    digest: {digest_of(self.team_a)}\n    requestsPerMinute: 5\n"
            "    maxConcurrent: 1\n    models: [llama3.2, all-minilm]\n"
            f"  team-b:\n    digest: {digest_of(self.team_b)}\n"
            f"  old:\n    digest: {digest_of(self.expired)}\n    expires: '{past}'\n"
        )

    def all(self) -> list[str]:
        return [self.team_a, self.team_b, self.expired, self.env_key]


@pytest.fixture
def keys(tmp_path: Path, redis_server: RedisServer) -> Keys:
    # Limits live in Redis under the key *name*: start every test with a clean slate.
    redis.Redis.from_url(redis_server.url).flushdb()
    return Keys(tmp_path)


def keyed_gateway(
    factory: GatewayFactory, keys: Keys, emulator: Emulator, redis_url: str, **env: str
) -> GatewayProcess:
    return factory(
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS=digest_of(keys.env_key),
        GATEWAY_API_KEYS_FILE=str(keys.file),
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_url,
        GATEWAY_REQUESTS_PER_MINUTE="1000",
        **env,
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_are_required_and_checked(
    gateway_factory: GatewayFactory, keys: Keys, emulator: Emulator, redis_server: RedisServer
) -> None:
    gateway = keyed_gateway(gateway_factory, keys, emulator, redis_server.url)
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        missing = http.post("/api/generate", json=BODY)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"].startswith("missing API key")
        unknown = http.post("/api/generate", json=BODY, headers=bearer("llmsk-nope"))
        assert unknown.status_code == 401
        assert unknown.json() == {"error": "invalid API key"}
        expired = http.post("/api/generate", json=BODY, headers=bearer(keys.expired))
        assert expired.status_code == 401
        assert expired.json() == {"error": "API key expired"}
        assert http.post("/api/generate", json=BODY, headers=bearer(keys.team_b)).status_code == 200
        via_header = http.post("/api/generate", json=BODY, headers={"X-API-Key": keys.env_key})
        assert via_header.status_code == 200
        forbidden = http.post(
            "/api/generate", json={**BODY, "model": "llama3.1:8b"}, headers=bearer(keys.team_a)
        )
        assert forbidden.status_code == 403
        assert "llama3.1:8b" in forbidden.json()["error"]
        openai = http.post("/v1/chat/completions", json={"model": "m", "messages": []})
        assert openai.status_code == 401
        assert openai.json()["error"]["type"] == "authentication_error"
        # Liveness, readiness and metrics are for the internal network, not keyed.
        assert http.get("/health").status_code == 200
        assert http.get("/ready").status_code == 200
        exposition = http.get("/metrics").text
    assert metric_value(exposition, "llm_auth_failures_total", reason="missing") == 2
    assert metric_value(exposition, "llm_auth_failures_total", reason="expired", key="old") == 1
    assert (
        metric_value(exposition, "llm_auth_failures_total", reason="model_forbidden", key="team-a")
        == 1
    )
    assert metric_value(exposition, "llm_requests_total", status="200") == 2
    # Plain keys appear nowhere: not in logs, not in metrics.
    text = gateway.log_text() + exposition
    for key in keys.all():
        assert key not in text
    names = {"team-b", f"key-{digest_of(keys.env_key)[:8]}"}
    gateway.wait_for_access_log(lambda lines: {line["key"] for line in lines} >= names)


def test_rate_limit_answers_429_with_headers(
    gateway_factory: GatewayFactory, keys: Keys, emulator: Emulator, redis_server: RedisServer
) -> None:
    gateway = keyed_gateway(gateway_factory, keys, emulator, redis_server.url)
    with httpx.Client(base_url=gateway.url, timeout=30, headers=bearer(keys.team_a)) as http:
        remaining = []
        for i in range(5):
            response = http.post("/api/generate", json={**BODY, "prompt": f"r{i}"})
            assert response.status_code == 200
            assert response.headers["x-ratelimit-limit"] == "5"
            remaining.append(int(response.headers["x-ratelimit-remaining"]))
        assert remaining == [4, 3, 2, 1, 0]
        limited = http.post("/api/generate", json=BODY)
        assert limited.status_code == 429
        assert limited.json()["error"].startswith("rate limit exceeded")
        assert 1 <= int(limited.headers["retry-after"]) <= 12  # one request per 12 s refills
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert int(limited.headers["x-ratelimit-reset"]) > 0
        # Another key has its own budget.
        assert http.post("/api/generate", json=BODY, headers=bearer(keys.team_b)).status_code == 200
        exposition = http.get("/metrics").text
    assert metric_value(exposition, "llm_rate_limited_total", key="team-a", limit="rpm") == 1
    assert emulator.count("POST /api/generate") == 6


def test_concurrency_limit(
    gateway_factory: GatewayFactory, keys: Keys, emulator: Emulator, redis_server: RedisServer
) -> None:
    gateway = keyed_gateway(gateway_factory, keys, emulator, redis_server.url)
    emulator.configure(first_token_delay=1.0)

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=gateway.url, timeout=30, headers=bearer(keys.team_a)
        ) as http:
            slow = asyncio.create_task(http.post("/api/generate", json={**BODY, "prompt": "slow"}))
            await asyncio.sleep(0.3)
            second = await http.post("/api/generate", json={**BODY, "prompt": "second"})
            first = await slow
            third = await http.post("/api/generate", json={**BODY, "prompt": "third"})
            return [first, second, third]

    first, second, third = asyncio.run(run())
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json()["error"].startswith("too many concurrent requests")
    assert third.status_code == 200  # the slot was released when the first finished


def test_limits_are_shared_across_replicas(
    gateway_factory: GatewayFactory, keys: Keys, emulator: Emulator, redis_server: RedisServer
) -> None:
    replicas = [keyed_gateway(gateway_factory, keys, emulator, redis_server.url) for _ in range(2)]
    statuses = []
    for i in range(8):
        gateway = replicas[i % 2]
        response = httpx.post(
            f"{gateway.url}/api/generate",
            json={**BODY, "prompt": f"s{i}"},
            headers=bearer(keys.team_a),
            timeout=30,
        )
        statuses.append(response.status_code)
    assert statuses == [200] * 5 + [429] * 3


def test_limits_fail_open_without_redis_or_closed_when_configured(
    gateway_factory: GatewayFactory, keys: Keys, emulator: Emulator, own_redis: RedisServer
) -> None:
    open_gateway = keyed_gateway(gateway_factory, keys, emulator, own_redis.url)
    closed_gateway = keyed_gateway(
        gateway_factory, keys, emulator, own_redis.url, GATEWAY_LIMITS_FAIL_CLOSED="true"
    )
    for gateway in (open_gateway, closed_gateway):
        assert (
            httpx.post(
                f"{gateway.url}/api/generate", json=BODY, headers=bearer(keys.team_b)
            ).status_code
            == 200
        )
    own_redis.stop()
    for i in range(10):  # more than team-a's 5 per minute: no limiter, no 429
        response = httpx.post(
            f"{open_gateway.url}/api/generate",
            json={**BODY, "prompt": f"o{i}"},
            headers=bearer(keys.team_a),
            timeout=30,
        )
        assert response.status_code == 200
        assert response.headers["x-cache"] == "BYPASS"
    closed = httpx.post(
        f"{closed_gateway.url}/api/generate", json=BODY, headers=bearer(keys.team_b), timeout=30
    )
    assert closed.status_code == 503
    assert "Redis" in closed.json()["error"]
    assert closed.headers["retry-after"]
    assert metric_value(open_gateway.metrics(), "llm_redis_errors_total") >= 1


@pytest.mark.process
def test_refuses_to_start_without_keys_unless_told(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "GATEWAY_PORT": "1"}
    refused = subprocess.run(
        [sys.executable, "-m", "llm_gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "no API keys configured" in refused.stderr
    assert "GATEWAY_AUTH_DISABLED=true" in refused.stderr
    plain_env = {**env, "GATEWAY_API_KEYS": "llmsk-abc"}
    plain = subprocess.run(
        [sys.executable, "-m", "llm_gateway"],
        env=plain_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 2
    assert "GATEWAY_API_KEYS" in plain.stderr
    assert "llmsk-abc" not in plain.stderr


def test_auth_disabled_is_said_loudly(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_LOG_LEVEL="info",
    )
    deadline = time.monotonic() + 5
    while "AUTHENTICATION IS DISABLED" not in gateway.log_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
