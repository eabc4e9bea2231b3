"""Small truths of the token quotas: a daily refusal carries the token headers of the
window that refused, and admission never refuses a request the remaining quota covers
(the guessed completion is charged, then settled; only what is known must fit)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.gateway.test_quotas import Keys, start
from tests.gateway.utc_day import assert_counts_to_utc_midnight
from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory
from tests.support.redis_server import RedisServer


def _ask(n: int) -> dict[str, object]:
    return {"model": "llama3.2", "prompt": f"question number {n}", "stream": False}


def test_a_daily_quota_is_spent_to_its_end_and_its_refusal_says_so(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    keys = Keys(tmp_path, team="    tokensPerDay: 1000\n")
    emulator.configure(tokens=40)
    gateway = start(gateway_factory, emulator, redis_server, keys, GATEWAY_CACHE_MODE="off")
    used, costs = 0, []
    with httpx.Client(base_url=gateway.url, headers=keys.auth("team"), timeout=30) as http:
        for n in range(60):
            sent = time.time()
            answer = http.post("/api/generate", json=_ask(n))
            answered = time.time()
            if answer.status_code != 200:
                break
            body = answer.json()
            costs.append(body["prompt_eval_count"] + body["eval_count"])
            used += costs[-1]
        else:
            raise AssertionError(f"never refused after {used} of 1000 tokens")
    assert answer.status_code == 429
    # Refused only once the day's quota is (about) spent: not while a typical
    # request (about 47 tokens here) still fits.
    assert 1000 - used < min(costs), (used, costs)
    assert answer.json() == {"error": "token quota exceeded: 1000 tokens per day (UTC)"}
    headers = answer.headers
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == str(max(0, 1000 - used))
    reset = headers["x-ratelimit-reset-tokens"]
    assert reset.endswith("s")
    minutes, _, seconds = reset.removesuffix("s").partition("m")
    reset_seconds = float(seconds) + 60 * float(minutes) if seconds else float(minutes) * 60
    assert_counts_to_utc_midnight(reset_seconds, sent, answered)
    assert_counts_to_utc_midnight(int(headers["Retry-After"]), sent, answered)


def test_a_request_whose_own_cap_does_not_fit_is_still_refused(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    """num_predict is the client's promise of its cost: over what remains, it waits."""
    keys = Keys(tmp_path, team="    tokensPerDay: 300\n")
    emulator.configure(tokens=5)
    gateway = start(gateway_factory, emulator, redis_server, keys, GATEWAY_CACHE_MODE="off")
    with httpx.Client(base_url=gateway.url, headers=keys.auth("team"), timeout=30) as http:
        first = http.post("/api/generate", json=_ask(0)).json()
        used = first["prompt_eval_count"] + first["eval_count"]
        capped = {**_ask(1), "options": {"num_predict": 299}}
        refused = http.post("/api/generate", json=capped)
        guessed = http.post("/api/generate", json=_ask(2))  # the guess (256) is no reason
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-remaining-tokens"] == str(300 - used)
    assert guessed.status_code == 200
