"""The response cache: hits are exact, one entry serves every form, policy and headers."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest
import redis

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory, GatewayProcess
from tests.support.latency_proxy import latency_proxy
from tests.support.redis_server import RedisServer

GREEDY = {"temperature": 0}


def generate(
    client: httpx.Client, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    payload = {"model": "llama3.2", "prompt": "tell me a story", "options": GREEDY, **body}
    return client.post("/api/generate", json=payload, headers=headers or {})


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in response.content.splitlines() if line.strip()]


def test_second_identical_request_is_a_byte_identical_hit(
    client: httpx.Client, emulator: Emulator
) -> None:
    for stream in (False, True):
        first = generate(client, stream=stream, prompt=f"story {stream}")
        second = generate(client, stream=stream, prompt=f"story {stream}")
        assert first.status_code == second.status_code == 200
        assert first.headers["x-cache"] == "MISS"
        assert second.headers["x-cache"] == "HIT"
        assert second.content == first.content
        assert int(second.headers["age"]) >= 0
        assert "age" not in first.headers
        assert second.headers["content-type"] == first.headers["content-type"]
    assert emulator.count("POST /api/generate") == 2


def test_one_entry_serves_streaming_and_non_streaming(
    client: httpx.Client, direct: httpx.Client
) -> None:
    streamed = generate(client, stream=True)
    assert streamed.headers["x-cache"] == "MISS"
    assert streamed.headers["content-type"] == "application/x-ndjson"
    single = generate(client, stream=False)
    assert single.headers["x-cache"] == "HIT"
    assert single.headers["content-type"] == "application/json; charset=utf-8"
    body = single.json()
    request = {"model": "llama3.2", "prompt": "tell me a story", "options": GREEDY, "stream": False}
    want = direct.post("/api/generate", json=request).json()
    assert body["response"] == want["response"] == "".join(c["response"] for c in lines(streamed))
    assert body["eval_count"] == want["eval_count"]
    assert body["context"] == want["context"]
    assert set(body) == set(want)


def test_chat_stream_replayed_from_a_non_streamed_entry(client: httpx.Client) -> None:
    chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "options": GREEDY}
    single = client.post("/api/chat", json={**chat, "stream": False})
    replay = client.post("/api/chat", json=chat)
    assert replay.headers["x-cache"] == "HIT"
    chunks = lines(replay)
    assert chunks[-1]["done"] is True
    assert chunks[-1]["eval_count"] == single.json()["eval_count"]
    assert "".join(c["message"]["content"] for c in chunks) == single.json()["message"]["content"]


def test_openai_forms_share_an_entry(client: httpx.Client) -> None:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hey"}], "temperature": 0}
    streaming = {**body, "stream": True, "stream_options": {"include_usage": True}}
    sse = client.post("/v1/chat/completions", json=streaming)
    assert sse.headers["x-cache"] == "MISS"
    assert sse.text.endswith("data: [DONE]\n\n")
    again = client.post("/v1/chat/completions", json=streaming)
    assert again.headers["x-cache"] == "HIT"
    assert again.content == sse.content
    single = client.post("/v1/chat/completions", json=body)
    assert single.headers["x-cache"] == "HIT"
    completion = single.json()
    assert completion["object"] == "chat.completion"
    assert completion["usage"]["completion_tokens"] > 0
    no_usage = client.post("/v1/chat/completions", json={**body, "stream": True})
    assert no_usage.headers["x-cache"] == "HIT"
    assert '"usage"' not in no_usage.text


def test_embeddings_are_cached(client: httpx.Client, emulator: Emulator) -> None:
    body = {"model": "all-minilm", "input": ["cache me"]}
    first, second = client.post("/api/embed", json=body), client.post("/api/embed", json=body)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.json()["embeddings"] == second.json()["embeddings"]
    v1 = {"model": "all-minilm", "input": "cache me"}
    assert client.post("/v1/embeddings", json=v1).headers["x-cache"] == "MISS"
    assert client.post("/v1/embeddings", json=v1).headers["x-cache"] == "HIT"
    assert emulator.count("POST /api/embed") == 1
    assert emulator.count("POST /v1/embeddings") == 1


def test_non_deterministic_requests_bypass_the_cache(
    client: httpx.Client, emulator: Emulator
) -> None:
    texts = set()
    for _ in range(3):
        response = client.post(
            "/api/generate", json={"model": "llama3.2", "prompt": "x", "stream": False}
        )
        assert response.headers["x-cache"] == "BYPASS"
        texts.add(response.json()["response"])
    assert emulator.count("POST /api/generate") == 3
    assert len(texts) > 1
    seeded = {"options": {"seed": 42}, "stream": False}
    assert generate(client, **seeded).headers["x-cache"] == "MISS"
    assert generate(client, **seeded).headers["x-cache"] == "HIT"


def test_cache_control_directives(client: httpx.Client, emulator: Emulator) -> None:
    generate(client, stream=False)
    assert generate(client, stream=False).headers["x-cache"] == "HIT"
    refreshed = generate(client, {"Cache-Control": "no-cache"}, stream=False)
    assert refreshed.headers["x-cache"] == "BYPASS"
    assert emulator.count("POST /api/generate") == 2
    unstored = generate(client, {"Cache-Control": "no-store"}, stream=False, prompt="other")
    assert unstored.headers["x-cache"] == "BYPASS"
    assert generate(client, stream=False, prompt="other").headers["x-cache"] == "MISS"


def test_load_only_requests_are_never_cached(client: httpx.Client, emulator: Emulator) -> None:
    for _ in range(2):
        loaded = client.post("/api/generate", json={"model": "llama3.2", "options": GREEDY})
        assert loaded.status_code == 200
        assert loaded.headers["x-cache"] == "BYPASS"
        assert lines(loaded)[-1]["done_reason"] == "load"
    unloaded = client.post("/api/chat", json={"model": "llama3.2", "messages": [], "keep_alive": 0})
    assert unloaded.headers["x-cache"] == "BYPASS"
    assert emulator.count("POST /api/generate") == 2


def test_a_repulled_model_never_serves_old_entries(
    client: httpx.Client, emulator: Emulator
) -> None:
    first = generate(client, stream=False)
    assert generate(client, stream=False).headers["x-cache"] == "HIT"
    emulator.set_digest("llama3.2:latest", "f" * 64)
    deadline = time.monotonic() + 10
    while True:  # the gateway reads /api/tags every 0.5 s in tests
        response = generate(client, stream=False)
        if response.headers["x-cache"] == "MISS":
            break
        assert time.monotonic() < deadline, "the new digest never reached the cache key"
        time.sleep(0.1)
    assert response.json()["response"] != first.json()["response"]  # new weights, new text
    assert generate(client, stream=False).headers["x-cache"] == "HIT"


def test_upstream_errors_pass_through_and_are_not_cached(
    client: httpx.Client, emulator: Emulator
) -> None:
    for _ in range(2):
        missing = generate(client, model="no-such-model")
        assert missing.status_code == 404
        assert missing.json() == {"error": "model 'no-such-model' not found"}
    assert emulator.count("POST /api/generate") == 2
    emulator.faults(fail_next=1)
    failed = generate(client, stream=False)
    assert failed.status_code == 500
    assert "error" in failed.json()
    assert failed.headers["x-cache"] == "MISS"
    ok = generate(client, stream=False)
    assert ok.status_code == 200
    assert ok.headers["x-cache"] == "MISS"
    assert generate(client, stream=False).headers["x-cache"] == "HIT"


def test_error_mid_stream_reaches_the_client_and_is_not_cached(
    client: httpx.Client, emulator: Emulator
) -> None:
    emulator.faults(error_next=1, error_after=2)
    broken = generate(client)
    assert broken.status_code == 200
    chunks = lines(broken)
    assert "error" in chunks[-1]
    assert not chunks[-1].get("done")
    healthy = generate(client)
    assert healthy.headers["x-cache"] == "MISS"
    assert lines(healthy)[-1]["done"] is True
    emulator.faults(cut_next=1, cut_after=2)
    cut = generate(client, prompt="cut me")
    assert cut.status_code == 200
    assert "error" in lines(cut)[-1]
    assert generate(client, prompt="cut me").headers["x-cache"] == "MISS"


@pytest.mark.parametrize(("mode", "expected"), [("all", "HIT"), ("off", "BYPASS")])
def test_cache_modes(
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_server: RedisServer,
    mode: str,
    expected: str,
) -> None:
    gateway: GatewayProcess = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_CACHE_MODE=mode,
    )
    body = {"model": "llama3.2", "prompt": f"mode {mode}", "stream": False}
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        http.post("/api/generate", json=body)
        assert http.post("/api/generate", json=body).headers["x-cache"] == expected
        greedy = {**body, "prompt": f"greedy {mode}", "options": GREEDY}
        http.post("/api/generate", json=greedy)
        assert http.post("/api/generate", json=greedy).headers["x-cache"] == expected


def test_ttl_expiry(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url, GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_CACHE_TTL_SECONDS="1", GATEWAY_CACHE_STALE_SECONDS="0",
    )  # fmt: skip
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        assert generate(http, stream=False, prompt="ttl").headers["x-cache"] == "MISS"
        assert generate(http, stream=False, prompt="ttl").headers["x-cache"] == "HIT"
        time.sleep(1.2)
        assert generate(http, stream=False, prompt="ttl").headers["x-cache"] == "MISS"


def test_an_answer_is_in_the_cache_before_its_client_has_it(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    """Read-your-writes: when a client has its answer, the entry is already in Redis, so
    asking again at once through any replica hits. The gateway reaches Redis over a
    link with 30 ms of latency, so an answer sent before its store completed would be
    caught by the check right after it."""
    with latency_proxy(redis_server.port, 0.03) as slow_link:
        gateway = gateway_factory(
            GATEWAY_UPSTREAM_URL=emulator.url,
            GATEWAY_REDIS_URL=f"redis://127.0.0.1:{slow_link.port}/0",
        )
        store = redis.Redis.from_url(redis_server.url)
        store.flushdb()
        with httpx.Client(timeout=30) as http:
            for i, stream in enumerate((False, True, False, True)):
                body = {"model": "llama3.2", "prompt": f"ryw {i}", "options": GREEDY,
                        "stream": stream}  # fmt: skip
                first = http.post(f"{gateway.url}/api/generate", json=body)
                assert first.headers["x-cache"] == "MISS"
                assert len(store.keys("llm:c1:*")) == i + 1, (i, stream)
