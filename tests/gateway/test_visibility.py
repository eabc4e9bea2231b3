"""One key cannot see another's: listings cut to the key's models, and the cache (hits,
`Age`, coalescing) shared only as widely as GATEWAY_CACHE_SCOPE says (default: per key).
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.gateway.test_quotas import Keys
from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory, GatewayProcess
from tests.support.redis_server import RedisServer

GREEDY = {"temperature": 0}


def _start(
    factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer, keys: Keys, **env: str
) -> GatewayProcess:
    redis_server.client().flushdb()
    return factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS_FILE=str(keys.file),
        **env,
    )


def test_listings_show_only_the_models_a_key_may_use(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    keys = Keys(tmp_path, bob='    models: ["llama3.2:*"]\n', root="")
    gateway = _start(gateway_factory, emulator, redis_server, keys)
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for model in ("llama3.2", "all-minilm"):  # both loaded, by a key that may
            loaded = http.post(
                "/api/embed", json={"model": model, "input": "x"}, headers=keys.auth("root")
            )
            assert loaded.status_code == 200
        everything = http.get("/api/tags", headers=keys.auth("root")).json()["models"]
        assert len(everything) > 2
        bob = keys.auth("bob")
        tags = http.get("/api/tags", headers=bob).json()["models"]
        assert sorted(m["name"] for m in tags) == ["llama3.2:1b", "llama3.2:latest"]
        openai = http.get("/v1/models", headers=bob).json()["data"]
        assert sorted(m["id"] for m in openai) == ["llama3.2:1b", "llama3.2:latest"]
        running = http.get("/api/ps", headers=bob).json()["models"]
        assert [m["name"] for m in running] == ["llama3.2:latest"]
        assert http.get("/v1/models/llama3.2", headers=bob).status_code == 200
        for refused in (
            http.get("/v1/models/all-minilm", headers=bob),
            http.post("/api/show", json={"model": "all-minilm"}, headers=bob),
        ):
            assert refused.status_code == 403
            assert "may not use model 'all-minilm'" in str(refused.json()["error"])


def _ask(http: httpx.Client, keys: Keys, name: str, prompt: str = "same words") -> httpx.Response:
    body = {"model": "llama3.2", "prompt": prompt, "stream": False, "options": GREEDY}
    return http.post("/api/generate", json=body, headers=keys.auth(name))


@pytest.mark.parametrize(
    ("scope", "carol_sees"), [(None, "MISS"), ("key", "MISS"), ("group", "HIT"), ("shared", "HIT")]
)
def test_the_cache_is_shared_only_as_widely_as_the_scope_says(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_server: RedisServer,
    scope: str | None,
    carol_sees: str,
) -> None:
    keys = Keys(tmp_path, alice="    cacheGroup: team\n", carol="    cacheGroup: team\n", dave="")
    env = {"GATEWAY_CACHE_SCOPE": scope} if scope else {}
    gateway = _start(gateway_factory, emulator, redis_server, keys, **env)
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        alice = _ask(http, keys, "alice")
        carol = _ask(http, keys, "carol")
        dave = _ask(http, keys, "dave")
        again = _ask(http, keys, "alice")
    assert alice.headers["x-cache"] == "MISS"
    assert carol.headers["x-cache"] == carol_sees
    assert ("age" in carol.headers) == (carol_sees == "HIT")
    assert dave.headers["x-cache"] == ("HIT" if scope == "shared" else "MISS")
    assert again.headers["x-cache"] == "HIT"


def test_coalescing_keeps_to_the_scope(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    """Two keys asking the same thing at the same time: two upstream calls, neither a
    follower of the other's (a COALESCED would tell one the other asked)."""
    keys = Keys(tmp_path, alice="", carol="")
    emulator.configure(tokens=20, token_delay=0.05)
    gateway = _start(gateway_factory, emulator, redis_server, keys)
    answers: dict[str, httpx.Response] = {}
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        threads = [
            threading.Thread(target=lambda n=name: answers.__setitem__(n, _ask(http, keys, n)))
            for name in ("alice", "carol")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert sorted(a.headers["x-cache"] for a in answers.values()) == ["MISS", "MISS"]
    assert emulator.count("POST /api/generate") == 2
