"""Cache pressure never evicts state: the response cache in its own Redis (or at least in
its own calls), a cap on what one answer may put there, a cap on embedding inputs.

Limits, quota debts, usage and routing state live in GATEWAY_REDIS_URL; cache entries
in GATEWAY_CACHE_REDIS_URL when it is set. The cache write is a call of its own, never
part of the script that frees the slot and settles the quota, so a refused or failed
write costs nothing but the entry. An answer bigger than GATEWAY_CACHE_MAX_ENTRY_BYTES
is streamed through, never stored and never held whole.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import orjson
import redis

from tests.gateway.test_quotas import Keys
from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.scripted_ollama import JSON_HEAD, Connection, ScriptedOllama, Seen

GREEDY = {"temperature": 0}


def _generate(prompt: str) -> dict[str, object]:
    return {"model": "llama3.2", "prompt": prompt, "stream": False, "options": GREEDY}


def _cache_keys(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter(match="llm:c*"))


def test_cache_entries_live_in_the_cache_redis_and_state_in_the_state_redis(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_server: RedisServer,
    own_redis: RedisServer,
) -> None:
    keys = Keys(tmp_path, team="    tokensPerDay: 100000\n")
    state = redis_server.client()
    state.flushdb()
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_CACHE_REDIS_URL=own_redis.url,
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS_FILE=str(keys.file),
    )
    with httpx.Client(base_url=gateway.url, headers=keys.auth("team"), timeout=10) as http:
        first = http.post("/api/generate", json=_generate("where do I live"))
        second = http.post("/api/generate", json=_generate("where do I live"))
        ready = http.get("/ready").json()
    assert [first.headers["x-cache"], second.headers["x-cache"]] == ["MISS", "HIT"]
    assert second.content == first.content
    assert len(_cache_keys(own_redis.client())) == 1
    assert _cache_keys(state) == []
    assert list(state.scan_iter(match="llm:usage:*")), "usage stays in the state Redis"
    assert list(state.scan_iter(match="llm:tpd:*")), "quota state stays in the state Redis"
    assert ready["cache_redis"] == "ok"
    assert emulator.count("POST /api/generate") == 1


def test_without_a_cache_redis_ready_says_the_cache_shares_the_state_redis(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    gateway = gateway_factory(GATEWAY_UPSTREAM_URL=emulator.url, GATEWAY_REDIS_URL=redis_server.url)
    assert httpx.get(f"{gateway.url}/ready", timeout=10).json()["cache_redis"] == "shared"
    assert "shares the state Redis" in gateway.log_text()


def test_a_dead_cache_redis_is_a_bypass_and_limits_still_hold(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    keys = Keys(tmp_path, team="    requestsPerMinute: 2\n")
    redis_server.client().flushdb()
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_CACHE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS_FILE=str(keys.file),
    )
    with httpx.Client(base_url=gateway.url, headers=keys.auth("team"), timeout=10) as http:
        answers = [http.post("/api/generate", json=_generate("no cache")) for _ in range(3)]
        ready = http.get("/ready")
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["x-cache"] for a in answers[:2]] == ["BYPASS", "BYPASS"]
    assert ready.status_code == 200  # the cache is a helper: the gateway is ready
    assert ready.json()["cache_redis"] == "unavailable"
    assert ready.json()["redis"] == "ok"


_STATE_KEYS = ("llm:rl:*", "llm:cc:*", "llm:tpm:*", "llm:tpd:*", "llm:usage:*", "llm:none")


def _usage(client: redis.Redis) -> dict[str, int]:
    return {
        field.decode(): int(value)
        for key in client.scan_iter(match="llm:usage:*")
        for field, value in client.hgetall(key).items()
    }


def test_a_refused_cache_write_still_settles_the_quota_and_the_usage(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, own_redis: RedisServer
) -> None:
    """One Redis that may not write cache entries (an ACL here; out of memory in real
    life): the write fails on its own, the settlement of each request still happens."""
    admin = own_redis.client()
    admin.execute_command(
        "ACL", "SETUSER", "gw", "on", ">gw-pw", "+@all",
        *[f"%RW~{pattern}" for pattern in _STATE_KEYS], "%R~llm:c*",
    )  # fmt: skip
    keys = Keys(tmp_path, team="    tokensPerMinute: 100000\n")
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=own_redis.url_as("gw", "gw-pw"),
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS_FILE=str(keys.file),
    )
    with httpx.Client(base_url=gateway.url, headers=keys.auth("team"), timeout=10) as http:
        answers = [http.post("/api/generate", json=_generate(f"p{i}")) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert _cache_keys(admin) == []
    usage = _usage(admin)
    assert usage.get("llama3.2|requests") == 3, usage
    assert usage.get("llama3.2|completion_tokens", 0) > 0, usage


def test_a_cache_redis_that_refuses_writes_never_touches_limits(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_server: RedisServer,
    own_redis: RedisServer,
) -> None:
    own_redis.client().execute_command("ACL", "SETUSER", "reader", "on", ">r-pw", "+@all", "%R~*")
    state = redis_server.client()
    state.flushdb()
    keys = Keys(tmp_path, team="    maxConcurrent: 1\n")
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_CACHE_REDIS_URL=own_redis.url_as("reader", "r-pw"),
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS_FILE=str(keys.file),
    )
    with httpx.Client(base_url=gateway.url, headers=keys.auth("team"), timeout=10) as http:
        answers = [http.post("/api/generate", json=_generate("same")) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "MISS", "MISS"]
    assert state.zcard("llm:cc:team") == 0
    assert _usage(state).get("llama3.2|requests") == 3
    assert _cache_keys(state) == []


def test_an_answer_over_the_entry_cap_is_relayed_whole_and_not_stored(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    redis_server.client().flushdb()
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_CACHE_MAX_ENTRY_BYTES="20000",
    )
    big = {"model": "all-minilm", "input": [f"text {i}" for i in range(10)]}
    small = {"model": "all-minilm", "input": ["one"]}
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        answers = [http.post("/api/embed", json=big) for _ in range(2)]
        smalls = [http.post("/api/embed", json=small) for _ in range(2)]
        direct = httpx.post(f"{emulator.url}/api/embed", json=big, timeout=30)
    assert [a.status_code for a in answers] == [200, 200]
    assert len(answers[0].content) > 20000
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "MISS"]
    got = answers[0].json()
    assert got["embeddings"] == direct.json()["embeddings"]
    assert [s.headers["x-cache"] for s in smalls] == ["MISS", "HIT"]
    assert len(_cache_keys(redis_server.client())) == 1


def test_an_answer_over_the_entry_cap_is_streamed_through_not_buffered(
    gateway_factory: GatewayFactory, redis_server: RedisServer
) -> None:
    """The upstream sends half of a big answer and waits: the client has those bytes
    before the upstream sends the rest (a buffering gateway would send nothing yet)."""
    text = "x" * 6000
    body = orjson.dumps({"model": "llama3.2", "response": text, "done": True, "eval_count": 1})
    half = len(body) // 2

    async def halves(seen: Seen, connection: Connection) -> None:
        await connection.send(JSON_HEAD + b"content-length: %d\r\n\r\n" % len(body) + body[:half])
        await upstream.gate(timeout=30)
        await connection.send(body[half:])

    with ScriptedOllama(halves) as upstream:
        gateway = gateway_factory(
            GATEWAY_UPSTREAM_URL=upstream.url,
            GATEWAY_REDIS_URL=redis_server.url,
            GATEWAY_CACHE_MAX_ENTRY_BYTES="1024",
        )
        received = bytearray()
        first_bytes = threading.Event()
        done = threading.Event()

        def read() -> None:
            with httpx.stream(
                "POST", f"{gateway.url}/api/generate", json=_generate("big"), timeout=30
            ) as response:
                for chunk in response.iter_raw():
                    received.extend(chunk)
                    if len(received) > 1024:
                        first_bytes.set()
            done.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert first_bytes.wait(15), "nothing reached the client before the upstream ended"
            assert not done.is_set()
        finally:
            upstream.open_gate()
        reader.join(30)
    assert bytes(received) == body


def test_embedding_inputs_are_capped(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_MAX_EMBED_INPUTS="3",
    )
    four = [f"t{i}" for i in range(4)]
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        native = http.post("/api/embed", json={"model": "all-minilm", "input": four})
        openai = http.post("/v1/embeddings", json={"model": "all-minilm", "input": four})
        fits = http.post("/api/embed", json={"model": "all-minilm", "input": four[:3]})
    assert native.status_code == 400
    assert native.json() == {"error": "too many embedding inputs: 4 (limit 3)"}
    assert openai.status_code == 400
    assert openai.json()["error"]["message"] == "too many embedding inputs: 4 (limit 3)"
    assert fits.status_code == 200
    assert emulator.count("POST /api/embed") == 1
