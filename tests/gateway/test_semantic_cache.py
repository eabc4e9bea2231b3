"""The semantic cache end to end: real gateways, a real Redis, the emulator serving the
real all-MiniLM-L6-v2 as all-minilm (the dev group installs it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from llm_gateway.contract import digest_of, mint_key

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory, GatewayProcess, metric_value
from tests.support.redis_server import RedisServer

QUESTION = "How do I undo the last git commit?"
PARAPHRASE = "How can I revert my most recent git commit?"
NEAR_MISS = "How do I not undo the last git commit?"
SYSTEM = {"role": "system", "content": "You are terse."}


def chat(
    client: httpx.Client | GatewayProcess,
    text: str,
    headers: dict[str, str] | None = None,
    system: dict[str, str] = SYSTEM,
    **extra: Any,
) -> httpx.Response:
    body = {
        "model": "llama3.2",
        "messages": [system, {"role": "user", "content": text}],
        "stream": False,
        "options": {"temperature": 0},
        **extra,
    }
    if isinstance(client, GatewayProcess):
        return httpx.post(f"{client.url}/api/chat", json=body, headers=headers or {}, timeout=30)
    return client.post("/api/chat", json=body, headers=headers or {})


def indexed(r: redis.Redis, at_least: int = 1, timeout: float = 15.0) -> list[bytes]:
    """The index's scope keys once `at_least` entries are indexed (`remember` runs
    after the answer has been sent)."""
    deadline = time.monotonic() + timeout
    while True:
        scopes = sorted(r.scan_iter("llm:s1:*"))
        if sum(len(entries(r, s)) for s in scopes) >= at_least:
            return scopes
        assert time.monotonic() < deadline, "the answer was never indexed"
        time.sleep(0.05)


def entries(r: redis.Redis, scope: bytes) -> list[bytes]:
    """The entry keys indexed under a scope (not its version field)."""
    return [f for f in r.hkeys(scope) if f != b"~v"]


def semantic_env(emulator: Emulator, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "GATEWAY_UPSTREAM_URL": emulator.url,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_SEMANTIC_CACHE": "true",
        # The first embedding loads the model in the emulator (about a second).
        "GATEWAY_SEMANTIC_EMBED_TIMEOUT_SECONDS": "20",
        **extra,
    }


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> redis.Redis:
    r = redis.Redis.from_url(redis_server.url)
    r.flushdb()
    return r


@pytest.fixture
def semantic(
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_server: RedisServer,
    fresh_redis: redis.Redis,
) -> GatewayProcess:
    return gateway_factory(**semantic_env(emulator, redis_server.url))


def test_off_by_default(client: httpx.Client, emulator: Emulator) -> None:
    assert chat(client, QUESTION).headers["x-cache"] == "MISS"
    assert chat(client, PARAPHRASE).headers["x-cache"] == "MISS"
    assert emulator.count("POST /api/embed") == 0


def test_a_paraphrase_is_answered_from_the_first_questions_entry(
    semantic: GatewayProcess, emulator: Emulator, fresh_redis: redis.Redis
) -> None:
    first = chat(semantic, QUESTION)
    assert first.headers["x-cache"] == "MISS"
    indexed(fresh_redis)
    second = chat(semantic, PARAPHRASE)
    assert second.status_code == 200
    assert second.headers["x-cache"] == "SEMANTIC"
    assert 0.85 <= float(second.headers["x-cache-similarity"]) < 1.0
    assert int(second.headers["age"]) >= 0
    assert second.json()["message"] == first.json()["message"]
    assert emulator.count("POST /api/chat") == 1
    # Streaming clients get the same entry in their form.
    streamed = chat(semantic, PARAPHRASE, stream=True)
    assert streamed.headers["x-cache"] == "SEMANTIC"
    assert streamed.headers["content-type"] == "application/x-ndjson"
    # Two texts embedded, each once: the first question when it was indexed, the
    # paraphrase at its first lookup (its second lookup read the vector from Redis).
    assert emulator.count("POST /api/embed") == 2
    metrics = semantic.metrics()
    assert metric_value(metrics, "llm_semantic_cache_lookups_total", outcome="hit") == 2
    assert metric_value(metrics, "llm_semantic_cache_lookup_seconds_count") >= 3
    lines = semantic.wait_for_access_log(lambda ls: sum(1 for x in ls if x.get("path")) >= 3)
    assert [x.get("cache") for x in lines if x.get("path")][-2:] == ["SEMANTIC", "SEMANTIC"]


def test_what_must_not_hit_does_not(
    semantic: GatewayProcess, emulator: Emulator, fresh_redis: redis.Redis
) -> None:
    chat(semantic, QUESTION)
    indexed(fresh_redis)
    # Same words, another question: the negation guard refuses it.
    assert chat(semantic, NEAR_MISS).headers["x-cache"] == "MISS"
    assert metric_value(semantic.metrics(), "llm_semantic_cache_refusals_total", guard="negation")
    # Anything but the last user message differs: another scope, no candidate.
    other_system = {"role": "system", "content": "You are verbose."}
    assert chat(semantic, PARAPHRASE, system=other_system).headers["x-cache"] == "MISS"
    assert (
        chat(semantic, PARAPHRASE, options={"temperature": 0, "num_predict": 7}).headers["x-cache"]
        == "MISS"
    )
    # Not deterministic: the exact cache would not store it, so neither may this.
    assert chat(semantic, PARAPHRASE, options={"temperature": 0.9}).headers["x-cache"] == "BYPASS"
    # The client says no-cache: both caches are bypassed.
    refused = chat(semantic, PARAPHRASE, headers={"Cache-Control": "no-cache"})
    assert refused.headers["x-cache"] == "BYPASS"
    assert emulator.count("POST /api/chat") == 6


def test_a_hit_stored_by_one_replica_is_found_by_another(
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_server: RedisServer,
    fresh_redis: redis.Redis,
) -> None:
    env = semantic_env(emulator, redis_server.url)
    one, two = gateway_factory(**env), gateway_factory(**env)
    first = chat(one, QUESTION)
    indexed(fresh_redis)
    second = chat(two, PARAPHRASE)
    assert second.headers["x-cache"] == "SEMANTIC"
    assert second.json()["message"] == first.json()["message"]
    # Each gateway keeps the scopes it read, by version: an entry another replica adds
    # afterwards is seen all the same.
    chat(one, "Write a haiku about autumn leaves.")
    indexed(fresh_redis, 2)
    third = chat(two, "Compose a haiku about the leaves in autumn.")
    assert third.headers["x-cache"] == "SEMANTIC"
    # And after a restart of both: the index lives in Redis.
    one.stop()
    two.stop()
    three = gateway_factory(**env)
    assert chat(three, "What's the way to undo my last git commit?").headers["x-cache"] == (
        "SEMANTIC"
    )


def test_an_evicted_entry_leaves_the_index(
    semantic: GatewayProcess, fresh_redis: redis.Redis
) -> None:
    chat(semantic, QUESTION)
    (scope,) = indexed(fresh_redis)
    (entry_key,) = entries(fresh_redis, scope)
    fresh_redis.delete(entry_key)  # as allkeys-lru would
    assert chat(semantic, PARAPHRASE).headers["x-cache"] == "MISS"
    # The paraphrase's own answer is indexed in place of the gone one.
    deadline = time.monotonic() + 15
    while fresh_redis.hexists(scope, entry_key) or len(entries(fresh_redis, scope)) != 1:
        assert time.monotonic() < deadline, fresh_redis.hkeys(scope)
        time.sleep(0.05)


def test_only_listed_models(
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_server: RedisServer,
    fresh_redis: redis.Redis,
) -> None:
    only_qwen = gateway_factory(
        **semantic_env(emulator, redis_server.url, GATEWAY_SEMANTIC_MODELS="qwen2.5")
    )
    chat(only_qwen, QUESTION)
    assert chat(only_qwen, PARAPHRASE).headers["x-cache"] == "MISS"
    assert emulator.count("POST /api/embed") == 0
    assert not list(fresh_redis.scan_iter("llm:s1:*"))


def test_keys_opt_in_and_a_hit_counts_as_a_hit(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_server: RedisServer,
    fresh_redis: redis.Redis,
) -> None:
    on, off, ops, neighbour = mint_key(), mint_key(), mint_key(), mint_key()
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "keys:\n"
        f"  opted-in:\n    digest: {digest_of(on)}\n    semanticCache: true\n"
        f"  other:\n    digest: {digest_of(off)}\n"
        f"  ops:\n    digest: {digest_of(ops)}\n    admin: true\n"
        f"  neighbour:\n    digest: {digest_of(neighbour)}\n    semanticCache: true\n"
    )
    gateway = gateway_factory(
        **semantic_env(emulator, redis_server.url),
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS_FILE=str(keys),
    )

    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    assert chat(gateway, QUESTION, headers=auth(on)).headers["x-cache"] == "MISS"
    indexed(fresh_redis)
    assert chat(gateway, PARAPHRASE, headers=auth(off)).headers["x-cache"] == "MISS"
    # Another key that opted in, but the cache is per key (GATEWAY_CACHE_SCOPE=key):
    # it may not share the first key's entries by meaning either.
    near = chat(gateway, "How can I revert the last commit I made in git?", headers=auth(neighbour))
    assert near.headers["x-cache"] == "MISS"
    # (the other key's answer is now stored too: ask in yet other words)
    again = chat(gateway, "What's the way to undo my last git commit?", headers=auth(on))
    assert again.headers["x-cache"] == "SEMANTIC"

    def rows() -> list[dict[str, Any]]:
        answer = httpx.get(
            f"{gateway.url}/admin/usage", params={"since": "1d", "by": "key"},
            headers=auth(ops), timeout=10,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["rows"]
        return found

    row = _eventually(
        rows, lambda rs: any(r["key"] == "opted-in" and r["requests"] == 2 for r in rs)
    )
    on_row = next(r for r in row if r["key"] == "opted-in")
    assert on_row["cache_hits"] == 1


def _eventually(
    read: Callable[[], list[dict[str, Any]]], done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(0.05)


def test_a_slow_or_failing_embedding_is_a_miss(
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_server: RedisServer,
    fresh_redis: redis.Redis,
) -> None:
    gateway = gateway_factory(**semantic_env(emulator, redis_server.url))
    chat(gateway, QUESTION)
    indexed(fresh_redis)
    fresh_redis.delete(*fresh_redis.scan_iter("llm:e1:*"))  # no cached vector to fall back on
    emulator.faults(fail_next=1, fail_status=500, paths=["/api/embed"])
    failed = chat(gateway, PARAPHRASE)
    assert (failed.status_code, failed.headers["x-cache"]) == (200, "MISS")
    # A hanging embedding: the answer comes after the bounded wait, as a miss.
    short = gateway_factory(
        **semantic_env(emulator, redis_server.url, GATEWAY_SEMANTIC_EMBED_TIMEOUT_SECONDS="0.3")
    )
    fresh_redis.delete(*fresh_redis.scan_iter("llm:e1:*"))
    emulator.faults(hang_next=-1, paths=["/api/embed"])
    slow = chat(short, "What's the way to undo my last git commit?")
    assert (slow.status_code, slow.headers["x-cache"]) == (200, "MISS")
    errors = short.metrics()
    assert metric_value(errors, "llm_semantic_cache_embed_errors_total", reason="timeout") >= 1
    assert metric_value(errors, "llm_semantic_cache_lookups_total", outcome="embed_failed") >= 1


def test_nothing_breaks_when_redis_is_down(
    gateway_factory: GatewayFactory, emulator: Emulator, own_redis: RedisServer
) -> None:
    gateway = gateway_factory(**semantic_env(emulator, own_redis.url))
    chat(gateway, QUESTION)
    own_redis.kill()
    for text in (QUESTION, PARAPHRASE):
        answer = chat(gateway, text)
        assert answer.status_code == 200
        assert answer.headers["x-cache"] in ("MISS", "BYPASS")


def test_the_index_lives_in_the_cache_redis(
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_server: RedisServer,
    fresh_redis: redis.Redis,
    own_redis: RedisServer,
) -> None:
    gateway = gateway_factory(
        **semantic_env(emulator, redis_server.url, GATEWAY_CACHE_REDIS_URL=own_redis.url)
    )
    cache = own_redis.client()
    chat(gateway, QUESTION)
    indexed(cache)
    assert chat(gateway, PARAPHRASE).headers["x-cache"] == "SEMANTIC"
    # Nothing of the cache (entries, index, vectors) in the state Redis.
    assert not [k for k in fresh_redis.scan_iter("llm:[sce]1:*")]
