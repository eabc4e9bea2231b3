"""The gateway against real redis-servers that want a password, an ACL user, or TLS.

Redis is a helper: when it works, a cacheable request is a MISS and then a HIT; when
the gateway cannot use it (wrong credentials, an untrusted certificate, Redis gone)
every request is still answered by the upstream, with `X-Cache: BYPASS`. A Redis
error reply fails that one call only (counted in `llm_redis_errors_total`): it never
makes the gateway skip Redis for the requests after it, as a lost connection does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory, GatewayProcess, metric_value
from tests.support.redis_server import RedisServer, RedisTls

PASSWORD = "pw-7f3a"
ALICE = ("alice", "secret-9c1e")

# redis_setup(tmp_path) -> a started server (stopped by the fixture)
Setup = Callable[[Path], RedisServer]

SETUPS: dict[str, Setup] = {
    "password": lambda d: RedisServer(d, password=PASSWORD),
    "acl-user": lambda d: RedisServer(d, user=ALICE),
    "tls": lambda d: RedisServer(d, tls=RedisTls.issue(d)),
    "tls-and-acl-user": lambda d: RedisServer(d, user=ALICE, tls=RedisTls.issue(d)),
}


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[[str], RedisServer]]:
    """`redis_factory("password")`: a started redis-server of that setup, for this test."""
    started: list[RedisServer] = []

    def start(setup: str) -> RedisServer:
        workdir = tmp_path / f"redis-{len(started)}"
        workdir.mkdir()
        server = SETUPS[setup](workdir).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def gateway_env(server: RedisServer, emulator: Emulator, **env: str) -> dict[str, str]:
    settings = {"GATEWAY_UPSTREAM_URL": emulator.url, "GATEWAY_REDIS_URL": server.url}
    if server.tls is not None:
        settings["GATEWAY_REDIS_CA_FILE"] = str(server.tls.ca_file)
    return {**settings, **env}


def ask(http: httpx.Client, prompt: str) -> httpx.Response:
    body = {"model": "llama3.2", "prompt": prompt, "stream": False, "options": {"temperature": 0}}
    return http.post("/api/generate", json=body)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def served(response: httpx.Response, what: str) -> str:
    """The response's X-Cache, once it is checked to be a whole answer (status 200)."""
    assert response.status_code == 200, f"{what}: {response.status_code} {response.text[:300]}"
    assert response.json().get("done") is True, f"{what}: not a whole answer: {response.text}"
    return str(response.headers.get("x-cache", "(none)"))


def miss_then_hit(http: httpx.Client, prompt: str, where: str) -> None:
    first = served(ask(http, prompt), f"first request {where}")
    second = served(ask(http, prompt), f"second request {where}")
    assert (first, second) == ("MISS", "HIT"), (
        f"{where}: the same request twice should be a MISS then a HIT (Redis used); "
        f"got X-Cache {first}, then {second}"
    )


def redis_errors(gateway: GatewayProcess) -> float:
    return metric_value(gateway.metrics(), "llm_redis_errors_total")


def log_tail(gateway: GatewayProcess) -> str:
    lines = [line for line in gateway.log_text().splitlines() if not line.startswith("{")]
    return "\n".join(lines[-8:])


# -- Redis that works --------------------------------------------------------------


@pytest.mark.parametrize("setup", list(SETUPS))
def test_redis_with_credentials_or_tls_caches(
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_factory: Callable[[str], RedisServer],
    setup: str,
) -> None:
    """`redis://:pw@`, `redis://alice:secret@`, `rediss://` with GATEWAY_REDIS_CA_FILE:
    the gateway logs in (and trusts the test CA), so a repeated request is a HIT."""
    server = redis_factory(setup)
    gateway = gateway_factory(**gateway_env(server, emulator))
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        miss_then_hit(http, unique(setup), f"Redis at {server.url}")
    assert server.client().dbsize() >= 1, "the entry is not in this Redis"


# -- Redis the gateway cannot use ----------------------------------------------------

WRONG_CREDENTIALS = {
    # (setup, username, password) in the gateway's URL
    "wrong-password": ("password", None, "not-the-password"),
    "no-password": ("password", None, None),
    "acl-user-wrong-password": ("acl-user", "alice", "not-alice's"),
    "unknown-acl-user": ("acl-user", "mallory", ALICE[1]),
    "acl-user-without-a-name": ("acl-user", None, ALICE[1]),
}


@pytest.mark.parametrize("case", list(WRONG_CREDENTIALS))
def test_wrong_credentials_bypass_redis_and_still_answer(
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_factory: Callable[[str], RedisServer],
    case: str,
) -> None:
    setup, username, password = WRONG_CREDENTIALS[case]
    server = redis_factory(setup)
    env = gateway_env(server, emulator, GATEWAY_REDIS_URL=server.url_as(username, password))
    gateway = gateway_factory(**env)
    prompt = unique(case)
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        verdicts = [served(ask(http, prompt), f"request {i} ({case})") for i in (1, 2)]
    assert verdicts == ["BYPASS", "BYPASS"], (
        f"{case}: Redis refuses these credentials, so X-Cache should be BYPASS; got {verdicts}"
    )
    assert emulator.count("POST /api/generate") == 2, "both requests should reach the upstream"
    assert redis_errors(gateway) >= 1, "a refused login should count in llm_redis_errors_total"


@pytest.mark.parametrize("trust", ["system-trust", "another-ca"])
def test_an_untrusted_redis_certificate_bypasses_redis_and_still_answers(
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_factory: Callable[[str], RedisServer],
    tmp_path: Path,
    trust: str,
) -> None:
    """A `rediss://` server whose CA the gateway was not given is not talked to."""
    server = redis_factory("tls")
    env = gateway_env(server, emulator)
    if trust == "system-trust":
        del env["GATEWAY_REDIS_CA_FILE"]
    else:
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        env["GATEWAY_REDIS_CA_FILE"] = str(other)
    gateway = gateway_factory(**env)
    prompt = unique(trust)
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        verdicts = [served(ask(http, prompt), f"request {i} ({trust})") for i in (1, 2)]
    assert verdicts == ["BYPASS", "BYPASS"], (
        f"{trust}: the gateway cannot trust this Redis, so X-Cache should be BYPASS; "
        f"got {verdicts}\n{log_tail(gateway)}"
    )
    assert server.client().dbsize() == 0, "something was written to the untrusted Redis"


# -- Redis error replies --------------------------------------------------------------

# A guard tripped by the error would skip Redis this long: longer than any test here.
NO_RETRY_SOON = {"GATEWAY_REDIS_RETRY_AFTER_SECONDS": "60"}


def test_a_wrongtype_reply_fails_one_lookup_not_redis_for_everyone(
    gateway_factory: GatewayFactory, emulator: Emulator, own_redis: RedisServer
) -> None:
    """A list planted where an entry's key is: looking that entry up is an error reply
    (WRONGTYPE). That request is answered by the upstream; the next, unrelated request
    still hits the cache."""
    gateway = gateway_factory(**gateway_env(own_redis, emulator, **NO_RETRY_SOON))
    redis = own_redis.client()
    unrelated, planted = unique("unrelated"), unique("planted")
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        miss_then_hit(http, unrelated, "before the error")
        before = set(redis.keys("*"))
        assert served(ask(http, planted), "the request to plant at") == "MISS"
        new_keys = set(redis.keys("*")) - before
        assert new_keys, "the answer was stored under no new key"
        for key in new_keys:
            redis.delete(key)
            redis.rpush(key, "not an entry")
        errors_before = redis_errors(gateway)
        upstream_before = emulator.count("POST /api/generate")
        planted_again = served(ask(http, planted), "the request whose lookup fails")
        upstream_after = emulator.count("POST /api/generate")
        errors_after = redis_errors(gateway)
        next_one = served(ask(http, unrelated), "the unrelated request after the error")
    assert upstream_after == upstream_before + 1, (
        f"the request whose lookup failed should be answered by the upstream "
        f"(X-Cache {planted_again})"
    )
    assert errors_after >= errors_before + 1, (
        "the WRONGTYPE reply should count in llm_redis_errors_total"
    )
    assert next_one == "HIT", (
        f"one error reply made the gateway skip Redis: the unrelated request after it got "
        f"X-Cache {next_one}, not HIT (only a lost connection or a timeout should do that)"
    )


def test_an_out_of_memory_reply_fails_one_store_not_redis_for_everyone(
    gateway_factory: GatewayFactory, emulator: Emulator, own_redis: RedisServer
) -> None:
    """maxmemory 1 byte, no eviction: every write is refused (OOM). The request whose
    answer cannot be stored is still answered; lookups go on, so an entry stored before
    still hits."""
    gateway = gateway_factory(**gateway_env(own_redis, emulator, **NO_RETRY_SOON))
    redis = own_redis.client()
    stored, unstorable = unique("stored"), unique("unstorable")
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        miss_then_hit(http, stored, "before Redis is full")
        redis.config_set("maxmemory-policy", "noeviction")
        redis.config_set("maxmemory", 1)
        errors_before = redis_errors(gateway)
        first = served(ask(http, unstorable), "the request whose answer cannot be stored")
        errors_after = redis_errors(gateway)
        next_one = served(ask(http, stored), "the request stored before, after the error")
        again = served(ask(http, unstorable), "the unstorable request again")
    assert first in ("MISS", "BYPASS"), f"nothing could have been cached: X-Cache {first}"
    assert errors_after >= errors_before + 1, "the OOM reply should count in llm_redis_errors_total"
    assert next_one == "HIT", (
        f"one error reply made the gateway skip Redis: the request stored before got "
        f"X-Cache {next_one}, not HIT (only a lost connection or a timeout should do that)"
    )
    assert again != "HIT", "an answer Redis refused to store was served from the cache"


# -- Redis gone and back ---------------------------------------------------------------


@pytest.mark.parametrize("setup", ["password", "tls-and-acl-user"])
def test_redis_killed_then_restarted_bypasses_then_hits_again(
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    redis_factory: Callable[[str], RedisServer],
    setup: str,
) -> None:
    """Killed: every request still answered (BYPASS). Restarted on the same port: after
    the retry interval (0.2 s in tests) the gateway connects and logs in again, and
    requests hit the cache again."""
    server = redis_factory(setup)
    gateway = gateway_factory(**gateway_env(server, emulator))
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        miss_then_hit(http, unique("before"), "before the kill")
        server.kill()
        dead = [served(ask(http, unique("dead")), "a request while Redis is dead") for _ in "ab"]
        assert dead == ["BYPASS", "BYPASS"], f"Redis is dead, yet X-Cache was {dead}"
        server.start()
        prompt, verdicts = unique("after"), []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "HIT" not in verdicts:
            verdicts.append(served(ask(http, prompt), "a request after the restart"))
            time.sleep(0.1)
    assert "HIT" in verdicts, (
        f"Redis came back but the cache never hit again within 10 s: X-Cache {verdicts}"
        f"\n{log_tail(gateway)}"
    )
