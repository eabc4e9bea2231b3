"""Usage per key, model and day: two gateway replicas on one Redis, every kind of request,
and the totals equal what the emulator reported for the work it did."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from tests.gateway.test_quotas import Keys, start
from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory, GatewayProcess, metric_value
from tests.support.redis_server import RedisServer

CHAT = [{"role": "user", "content": "count me"}]


def final_stats(response: httpx.Response) -> tuple[int, int]:
    """(prompt, completion) tokens Ollama reported in a response, any form."""
    text = response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: {")]
        usage = next(e["usage"] for e in events if e.get("usage"))
        return usage["prompt_tokens"], usage["completion_tokens"]
    last = json.loads(text.strip().split("\n")[-1])
    if "usage" in last:
        return last["usage"]["prompt_tokens"], last["usage"]["completion_tokens"]
    return last.get("prompt_eval_count", 0), last.get("eval_count", 0)


class Ledger:
    """What the emulator did, from the answers that caused its work."""

    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self.requests: dict[str, int] = {}

    def add(self, key: str, response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        self.requests[key] = self.requests.get(key, 0) + 1
        if response.headers.get("X-Cache") in ("MISS", "BYPASS"):
            prompt, completion = final_stats(response)
            self.prompt += prompt
            self.completion += completion


@pytest.fixture
def replicas(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> tuple[Keys, GatewayProcess, GatewayProcess]:
    keys = Keys(
        tmp_path,
        alpha="    tokensPerMinute: 1000000\n",
        beta="    priorities: [interactive]\n",
        ops="    admin: true\n",
    )
    emulator.configure(tokens=12)
    # The keys share the cache: hits and followers across keys are what this counts.
    one = start(gateway_factory, emulator, redis_server, keys, GATEWAY_CACHE_SCOPE="shared")
    two = gateway_factory(**{k: v for k, v in one.env.items() if k != "GATEWAY_PORT"})
    return keys, one, two


def usage_rows(gateway: GatewayProcess, keys: Keys, by: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{gateway.url}/admin/usage", params={"since": "1d", "by": by}, headers=keys.auth("ops"),
        timeout=10,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["rows"]
    return rows


def test_usage_adds_up_across_replicas_and_every_kind_of_request(
    replicas: tuple[Keys, GatewayProcess, GatewayProcess], emulator: Emulator
) -> None:
    keys, one, two = replicas
    ledger = Ledger()
    gateways = [one, two]
    sent = 0

    def post(key: str, path: str, body: dict[str, Any]) -> httpx.Response:
        nonlocal sent
        gateway = gateways[sent % 2]
        sent += 1
        response = httpx.post(f"{gateway.url}{path}", json=body, headers=keys.auth(key), timeout=20)
        ledger.add(key, response)
        return response

    # Non-streaming, cacheable: a miss on one replica, then hits on both.
    det = {"model": "llama3.2", "prompt": "det", "stream": False, "options": {"temperature": 0}}
    assert post("alpha", "/api/generate", det).headers["X-Cache"] == "MISS"
    assert post("alpha", "/api/generate", det).headers["X-Cache"] == "HIT"
    assert post("beta", "/api/generate", det).headers["X-Cache"] == "HIT"
    # Streaming (not cacheable: no temperature 0), native chat and generate.
    post("alpha", "/api/chat", {"model": "llama3.2", "messages": CHAT})
    post("beta", "/api/generate", {"model": "llama3.2", "prompt": "stream me"})
    # OpenAI, non-streaming and streaming with usage.
    post("beta", "/v1/chat/completions", {"model": "llama3.2", "messages": CHAT})
    post(
        "alpha", "/v1/chat/completions",
        {"model": "llama3.2", "messages": CHAT, "stream": True,
         "stream_options": {"include_usage": True}},
    )  # fmt: skip
    # Embeddings count their prompt tokens.
    post("beta", "/api/embed", {"model": "nomic-embed-text", "input": ["one", "two"]})

    # Coalesced followers: three identical requests at once on one replica.
    emulator.configure(first_token_delay=0.5)
    same = {"model": "llama3.2", "prompt": "together", "stream": False,
            "options": {"temperature": 0}}  # fmt: skip

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=one.url, timeout=20) as http:
            return await asyncio.gather(
                *(http.post("/api/generate", json=same, headers=keys.auth(k))
                  for k in ("alpha", "beta", "alpha"))
            )  # fmt: skip

    answers = asyncio.run(together())
    labels = sorted(a.headers["X-Cache"] for a in answers)
    assert labels == ["COALESCED", "COALESCED", "MISS"], labels
    for key, answer in zip(("alpha", "beta", "alpha"), answers, strict=True):
        ledger.add(key, answer)
    emulator.configure(first_token_delay=0.0)

    deadline_rows = _eventually(lambda: usage_rows(one, keys, "key"), ledger)
    by_key = {row["key"]: row for row in deadline_rows}
    total_prompt = sum(r["prompt_tokens"] for r in deadline_rows)
    total_completion = sum(r["completion_tokens"] for r in deadline_rows)
    assert (total_prompt, total_completion) == (ledger.prompt, ledger.completion)
    assert {k: by_key[k]["requests"] for k in ledger.requests} == ledger.requests
    assert by_key["alpha"]["cache_hits"] + by_key["beta"]["cache_hits"] == 2
    assert by_key["alpha"]["coalesced"] + by_key["beta"]["coalesced"] == 2
    assert all(row["errors"] == 0 for row in deadline_rows)
    by_model = {row["model"]: row for row in usage_rows(two, keys, "model")}
    assert set(by_model) == {"llama3.2", "nomic-embed-text"}
    assert by_model["nomic-embed-text"]["completion_tokens"] == 0
    assert by_model["nomic-embed-text"]["prompt_tokens"] > 0
    # Prometheus counts the same tokens, by key, on the replica that did the work.
    exported = sum(
        metric_value(g.metrics(), "llm_key_tokens_total", type=t) for g in gateways
        for t in ("prompt", "completion")
    )  # fmt: skip
    assert exported == ledger.prompt + ledger.completion


def _eventually(read: Any, ledger: Ledger) -> list[dict[str, Any]]:
    """Usage rows once every request is counted (followers count after their answer)."""
    import time

    deadline = time.monotonic() + 5
    while True:
        rows: list[dict[str, Any]] = read()
        if sum(r["requests"] for r in rows) >= sum(ledger.requests.values()):
            return rows
        assert time.monotonic() < deadline, f"usage never caught up: {rows}"
        time.sleep(0.05)


def test_a_cut_stream_counts_what_it_produced(
    replicas: tuple[Keys, GatewayProcess, GatewayProcess], emulator: Emulator
) -> None:
    """The client leaves after a few tokens: the gateway cancels the upstream call and
    counts the tokens that came back, and the prompt by its estimate."""
    keys, one, _ = replicas
    emulator.configure(tokens=200, token_delay=0.05)
    streamed = 0
    with (
        httpx.Client(base_url=one.url, timeout=20) as http,
        http.stream(
            "POST",
            "/api/generate",
            headers=keys.auth("alpha"),
            json={"model": "llama3.2", "prompt": "a long story"},
        ) as response,  # fmt: skip
    ):
        for line in response.iter_lines():
            if line:
                streamed += 1
            if streamed == 5:
                break
    rows = _eventually(lambda: usage_rows(one, keys, "key"), _one_request("alpha"))
    alpha = next(r for r in rows if r["key"] == "alpha")
    assert 5 <= alpha["completion_tokens"] <= 10, alpha
    assert alpha["prompt_tokens"] >= 1  # the estimate: Ollama never said
    assert alpha["requests"] == 1


def _one_request(key: str) -> Ledger:
    ledger = Ledger()
    ledger.requests[key] = 1
    return ledger


def test_the_cli_and_the_admin_endpoint_agree(
    replicas: tuple[Keys, GatewayProcess, GatewayProcess], redis_server: RedisServer
) -> None:
    keys, one, _ = replicas
    for prompt in ("a", "b"):
        httpx.post(
            f"{one.url}/api/generate", headers=keys.auth("beta"), timeout=10,
            json={"model": "llama3.2", "prompt": prompt, "stream": False},
        )  # fmt: skip
    rows = _eventually(lambda: usage_rows(one, keys, "model"), _one_request("beta"))
    cli = subprocess.run(
        [sys.executable, "-m", "llm_gateway", "usage", "--since", "1d", "--by", "model",
         "--format", "json"],
        env={"GATEWAY_REDIS_URL": redis_server.url, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert orjson.loads(cli.stdout)["rows"] == rows
    table = subprocess.run(
        [sys.executable, "-m", "llm_gateway", "usage", "--key", "beta"],
        env={"GATEWAY_REDIS_URL": redis_server.url, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.splitlines()[:2]
    assert header.split()[:3] == ["key", "requests", "prompt_tokens"]
    assert line.split()[:2] == ["beta", "2"]


def test_only_admin_keys_read_usage_and_queues(
    replicas: tuple[Keys, GatewayProcess, GatewayProcess],
) -> None:
    keys, one, _ = replicas
    for path in ("/admin/usage", "/admin/queue"):
        assert httpx.get(f"{one.url}{path}", timeout=5).status_code == 401
        denied = httpx.get(f"{one.url}{path}", headers=keys.auth("alpha"), timeout=5)
        assert denied.status_code == 403
        allowed = httpx.get(f"{one.url}{path}", headers=keys.auth("ops"), timeout=5)
        assert allowed.status_code == 200
    bad = httpx.get(
        f"{one.url}/admin/usage", params={"since": "forever"}, headers=keys.auth("ops"), timeout=5
    )
    assert bad.status_code == 400


def test_usage_is_kept_for_the_retention_period(
    replicas: tuple[Keys, GatewayProcess, GatewayProcess], redis_server: RedisServer
) -> None:
    keys, one, _ = replicas
    httpx.post(
        f"{one.url}/api/generate", headers=keys.auth("alpha"), timeout=10,
        json={"model": "llama3.2", "prompt": "kept", "stream": False},
    )  # fmt: skip
    client = redis.Redis.from_url(redis_server.url)
    (name,) = client.keys("llm:usage:*:alpha")
    ttl = client.ttl(name)
    assert 90 * 86400 < ttl <= 91 * 86400
