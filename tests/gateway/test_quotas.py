"""Token quotas per key, against real gateways, a real Redis and the emulator: charged
at admission by estimate, settled with the real count, shared by every replica."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import redis
from llm_gateway.contract import digest_of, mint_key
from llm_gateway.quotas import utc_day

from tests.gateway.utc_day import assert_counts_to_utc_midnight
from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory, GatewayProcess, metric_value
from tests.support.redis_server import RedisServer


class Keys:
    def __init__(self, workdir: Path, **entries: str) -> None:
        self.plain = {name: mint_key() for name in entries}
        lines = ["keys:"]
        for name, extra in entries.items():
            lines.append(f"  {name}:\n    digest: {digest_of(self.plain[name])}\n{extra}")
        self.file = workdir / "keys.yaml"
        self.file.write_text("\n".join(lines) + "\n")

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plain[name]}"}


def start(
    factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer, keys: Keys, **env: str
) -> GatewayProcess:
    redis.Redis.from_url(redis_server.url).flushdb()
    return factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS_FILE=str(keys.file),
        **env,
    )


def generate(prompt: str, num_predict: int = 20, **extra: object) -> dict[str, object]:
    return {
        "model": "llama3.2",
        "prompt": prompt,
        "stream": False,
        "options": {"temperature": 0, "num_predict": num_predict},
        **extra,
    }


def test_a_key_over_its_token_quota_gets_429_with_the_token_headers(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    """num_predict 100 with a 250-token minute: two fit at once, the third does not."""
    keys = Keys(tmp_path, team="    tokensPerMinute: 250\n")
    emulator.configure(tokens=100)
    gateway = start(gateway_factory, emulator, redis_server, keys, GATEWAY_CACHE_MODE="off")
    with httpx.Client(base_url=gateway.url, headers=keys.auth("team"), timeout=10) as http:
        answers = [http.post("/api/generate", json=generate(f"p{i}", 100)) for i in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        limited = answers[2]
        assert limited.json() == {"error": "token quota exceeded: 250 tokens per minute"}
        assert limited.headers["x-ratelimit-limit-tokens"] == "250"
        assert int(limited.headers["x-ratelimit-remaining-tokens"]) < 100
        assert limited.headers["x-ratelimit-reset-tokens"].endswith("s")
        assert int(limited.headers["Retry-After"]) >= 1
        first = answers[0]
        assert first.headers["x-ratelimit-limit-tokens"] == "250"
        # OpenAI's shape on /v1, same quota.
        v1 = http.post(
            "/v1/chat/completions",
            json={"model": "llama3.2", "messages": [{"role": "user", "content": "x"}],
                  "max_tokens": 100},
        )  # fmt: skip
        assert v1.status_code == 429
        assert v1.json()["error"]["type"] == "rate_limit_error"
    assert metric_value(gateway.metrics(), "llm_rate_limited_total", key="team", limit="tpm") == 2


def test_the_real_count_settles_the_estimate(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    """num_predict 500 is charged at admission; the emulator generates 8 tokens, and the
    settlement gives the difference back: the next request sees it."""
    keys = Keys(tmp_path, team="    tokensPerMinute: 1000\n")
    emulator.configure(tokens=8)
    gateway = start(gateway_factory, emulator, redis_server, keys, GATEWAY_CACHE_MODE="off")
    with httpx.Client(base_url=gateway.url, headers=keys.auth("team"), timeout=10) as http:
        first = http.post("/api/generate", json=generate("hello", 500))
        assert first.status_code == 200
        charged_at_admission = 1000 - int(first.headers["x-ratelimit-remaining-tokens"])
        assert charged_at_admission >= 500
        body = first.json()
        real = body["prompt_eval_count"] + body["eval_count"]
        second = http.post("/api/generate", json=generate("hello again", 1))
        remaining = int(second.headers["x-ratelimit-remaining-tokens"])
        # Only the real count of the first and the estimate of the second are spent.
        assert 1000 - remaining <= real + 10 + 1
        assert 1000 - remaining >= real


def test_a_daily_quota_refuses_until_midnight_utc(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    keys = Keys(tmp_path, team="    tokensPerDay: 150\n")
    emulator.configure(tokens=100)
    gateway = start(gateway_factory, emulator, redis_server, keys, GATEWAY_CACHE_MODE="off")
    with httpx.Client(base_url=gateway.url, headers=keys.auth("team"), timeout=10) as http:
        assert http.post("/api/generate", json=generate("a", 100)).status_code == 200
        sent = time.time()
        refused = http.post("/api/generate", json=generate("b", 100))
        answered = time.time()
    assert refused.status_code == 429
    assert refused.json() == {"error": "token quota exceeded: 150 tokens per day (UTC)"}
    assert_counts_to_utc_midnight(int(refused.headers["Retry-After"]), sent, answered)


def test_cache_hits_cost_no_tokens_unless_configured(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    keys = Keys(tmp_path, team="    tokensPerMinute: 10000\n")
    emulator.configure(tokens=50)
    for hits_cost, expect_cost in (("false", False), ("true", True)):
        gateway = start(
            gateway_factory, emulator, redis_server, keys, GATEWAY_QUOTA_HITS_COST_TOKENS=hits_cost
        )
        with httpx.Client(base_url=gateway.url, headers=keys.auth("team"), timeout=10) as http:
            miss = http.post("/api/generate", json=generate("cached", 50))
            assert miss.headers["X-Cache"] == "MISS"
            used = miss.json()["prompt_eval_count"] + miss.json()["eval_count"]
            hits = [http.post("/api/generate", json=generate("cached", 50)) for _ in range(2)]
            assert [h.headers["X-Cache"] for h in hits] == ["HIT", "HIT"]
        # Between two hits only the second hit's cost (if any) is spent; the quota refills
        # 10000 per minute, a few tokens in the milliseconds between them.
        spent = int(hits[0].headers["x-ratelimit-remaining-tokens"]) - int(
            hits[1].headers["x-ratelimit-remaining-tokens"]
        )
        if expect_cost:
            assert used - 5 <= spent <= used, f"a hit should pay its {used} tokens, paid {spent}"
        else:
            assert spent <= 0, f"a hit should be free, paid {spent}"
        gateway.stop()


def test_two_replicas_share_one_quota(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    keys = Keys(tmp_path, team="    tokensPerMinute: 250\n")
    emulator.configure(tokens=100)
    one = start(gateway_factory, emulator, redis_server, keys, GATEWAY_CACHE_MODE="off")
    two = gateway_factory(**{k: v for k, v in one.env.items() if k != "GATEWAY_PORT"})
    statuses = []
    for index in range(3):
        url = (one, two)[index % 2].url
        answer = httpx.post(
            f"{url}/api/generate", json=generate(f"r{index}", 100), headers=keys.auth("team"),
            timeout=10,
        )  # fmt: skip
        statuses.append(answer.status_code)
    assert statuses == [200, 200, 429]


@pytest.mark.parametrize(("fail_closed", "status"), [("false", 200), ("true", 503)])
def test_quotas_follow_the_limits_fail_setting_without_redis(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    own_redis: RedisServer,
    fail_closed: str,
    status: int,
) -> None:
    keys = Keys(tmp_path, team="    tokensPerMinute: 10\n")
    gateway = start(
        gateway_factory, emulator, own_redis, keys, GATEWAY_LIMITS_FAIL_CLOSED=fail_closed
    )
    own_redis.stop()
    answer = httpx.post(
        f"{gateway.url}/api/generate", json=generate("no redis", 500), headers=keys.auth("team"),
        timeout=10,
    )  # fmt: skip
    assert answer.status_code == status


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (0.0, "19700101"),
        (86399.999, "19700101"),
        (86400.0, "19700102"),
        (1_798_761_599.5, "20261231"),
        (1_798_761_600.0, "20270101"),
    ],
)
def test_utc_day_turns_at_utc_midnight(now: float, day: str) -> None:
    assert utc_day(now) == day
    assert utc_day(now) == time.strftime("%Y%m%d", time.gmtime(now))  # and again, cached
