"""The attacker's probes, live, through the TLS edge of the local stack.

Each probe class of the tenancy review is a test here, so none comes back: auth
variants, admin gating, body caps and bad input, path tricks, trailing slashes, keys in
URLs, malformed requests (JSON errors from every hop), keep_alive abuse, cross-key
cache and listing leaks, huge embedding inputs, quota debts that another key's traffic
must not erase, client disconnects; and, at the end of it, no key or password in any
log of the run.

One stack for the module (one emulator, one gateway), with these keys, minted here:

    ops    admin           alice  models [llama3.2:1b]     bob    models ["qwen2.5:*"]
    tiny   60 tokens/min   carol  every model              expired (2020)
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from llm_gateway.contract import digest_of, mint_key

from tests.e2e.stack_process import E2E_STACK_FILE, LocalStackProcess
from tests.e2e.traffic import RunningStack, poll

LLAMA = "llama3.2:1b"
QWEN = "qwen2.5:0.5b"
EMBED = "nomic-embed-text"
MAX_EMBED_INPUTS = 16
KEEP_ALIVE_MAX_SECONDS = 600
KEY_NAMES = ("ops", "alice", "bob", "tiny", "carol", "expired")
KEY_ENTRIES: dict[str, dict[str, Any]] = {
    "ops": {"admin": True},
    "alice": {"models": [LLAMA]},
    "bob": {"models": ["qwen2.5:*"]},
    "tiny": {"tokensPerMinute": 60},
    "carol": {},
    "expired": {"expires": "2020-01-01T00:00:00Z"},
}


@dataclass
class Attack:
    stack: RunningStack
    keys: dict[str, str]
    workdir: Path

    @property
    def port(self) -> int:
        return int(self.stack.url.rsplit(":", 1)[1])

    def client(self, name: str | None = None) -> httpx.Client:
        transport = httpx.HTTPTransport(verify=self.stack.tls_context())
        headers = {"Authorization": f"Bearer {self.keys[name]}"} if name else {}
        return httpx.Client(
            base_url=self.stack.url, transport=transport, headers=headers, timeout=60
        )

    def raw(self, data: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        """`data` as written over TLS (what no client library would send)."""
        plain = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        with self.stack.tls_context().wrap_socket(plain, server_hostname="localhost") as sock:
            sock.sendall(data)
            reply = http.client.HTTPResponse(sock, method="GET")
            reply.begin()
            return reply.status, reply.headers, reply.read()

    def secrets(self) -> dict[str, str]:
        """Every key and password of the run, by name."""
        credentials = json.loads((self.workdir / "credentials.json").read_text())
        return {
            **{f"key {name}": key for name, key in self.keys.items()},
            "dev key": credentials["devKey"],
            "dev admin key": credentials["devAdminKey"],
            "redis password": credentials["redisPassword"],
        }

    def state_redis(self) -> redis.Redis:
        credentials = json.loads((self.workdir / "credentials.json").read_text())
        [service] = [s for s in self.stack.services() if s["name"] == "redis"]
        return redis.Redis(port=service["port"], password=credentials["redisPassword"])


def attack_stack_file(directory: Path, keys: dict[str, str]) -> Path:
    values = yaml.safe_load(E2E_STACK_FILE.read_text(encoding="utf-8"))
    config = values["config"]
    config["llm-stack:ollama"] = {"instances": 1, "models": [LLAMA, QWEN, EMBED]}
    config["llm-stack:gateway"] = {
        "replicas": 1,
        "requestsPerMinute": 6000,
        "maxConcurrentPerKey": 64,
        "shutdownGraceSeconds": 5,
        "maxEmbedInputs": MAX_EMBED_INPUTS,
        "keepAliveMaxSeconds": KEEP_ALIVE_MAX_SECONDS,
        "cacheScope": "key",
    }
    config["llm-stack:edge"] = {"rateLimitPerSecond": 500, "rateLimitBurst": 1000}
    config["llm-stack:apiKeys"] = {
        name: {"digest": digest_of(keys[name]), **KEY_ENTRIES[name]} for name in KEY_NAMES
    }
    path = directory / "Pulumi.attack.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    directory = tmp_path_factory.mktemp("attack")
    keys = {name: mint_key() for name in KEY_NAMES}
    process = LocalStackProcess(directory / "stack", attack_stack_file(directory, keys)).start()
    try:
        stack = RunningStack(process, process.wait_ready())
        yield Attack(stack, keys, directory / "stack")
    finally:
        process.stop()


def generate(model: str = LLAMA, prompt: str = "", **extra: Any) -> dict[str, Any]:
    body = {
        "model": model,
        "prompt": prompt or f"probe {time.monotonic_ns()}",
        "stream": False,
        "options": {"temperature": 0},
    }
    return body | extra


def assert_json_error(reply: httpx.Response, status: int) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    message = error["message"] if isinstance(error, dict) else error
    assert isinstance(message, str)
    assert message
    return message


# ---- authentication and admin gating -----------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer llmsk-wrong"}, 401),
        ({"Authorization": "Basic {alice}"}, 401),
        ({"Authorization": "Bearer {ALICE}"}, 401),
        ({"Authorization": "Bearer wrong", "X-API-Key": "{alice}"}, 401),
        ({"Authorization": "Bearer {expired}"}, 401),
        ({"Authorization": "bearer   {alice}"}, 200),
        ({"Authorization": "BEARER {alice}"}, 200),
        ({"X-API-Key": "{alice}"}, 200),
    ],
)
def test_auth_variants(attack: Attack, headers: dict[str, str], status: int) -> None:
    filled = {
        name: value.format(
            alice=attack.keys["alice"],
            ALICE=attack.keys["alice"].upper(),
            expired=attack.keys["expired"],
        )
        for name, value in headers.items()
    }
    with attack.client() as http:
        reply = http.post("/api/generate", json=generate(), headers=filled)
    if status == 200:
        assert reply.status_code == 200, reply.text
    else:
        assert_json_error(reply, status)


@pytest.mark.parametrize("name", [None, "alice", "carol"])
def test_only_admin_keys_reach_the_admin_endpoints(attack: Attack, name: str | None) -> None:
    with attack.client(name) as http:
        for path in ("/admin/queue", "/admin/usage?since=7d&by=key"):
            assert_json_error(http.get(path), 401 if name is None else 403)
    with attack.client("ops") as http:
        assert http.get("/admin/queue").status_code == 200
        assert http.get("/admin/usage?since=7d&by=key").status_code == 200
        assert_json_error(http.post("/admin/queue"), 405)


# ---- caps and bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"model": "llama3.2:1b", "prompt": ', 400),
        (b"[1, 2, 3]", 400),
        (b"\xff\xfe not utf-8", 400),
        (b'{"model": "llama3.2:1b", "prompt": NaN}', 400),
        (b"[" * 100_000, 400),
        (b'{"model": 5, "prompt": "x"}', 400),
        (b"x" * (11 * 1024 * 1024), 413),
    ],
    ids=["truncated", "not-an-object", "not-utf8", "nan", "deep", "model-int", "over-cap"],
)
def test_bad_bodies_get_json_errors(attack: Attack, body: bytes, status: int) -> None:
    with attack.client("carol") as http:
        assert_json_error(http.post("/api/generate", content=body), status)


def test_too_many_messages_are_refused(attack: Attack) -> None:
    # GATEWAY_MAX_MESSAGES keeps its default (10,000): one more is refused.
    messages = [{"role": "user", "content": "x"}] * 10_001
    with attack.client("carol") as http:
        reply = http.post("/api/chat", json={"model": LLAMA, "messages": messages})
        assert "too many messages" in assert_json_error(reply, 400)


def test_too_many_embedding_inputs_are_refused(attack: Attack) -> None:
    with attack.client("carol") as http:
        over = {"model": EMBED, "input": [f"e{i}" for i in range(MAX_EMBED_INPUTS + 1)]}
        assert_json_error(http.post("/api/embed", json=over), 400)
        at_cap = {"model": EMBED, "input": [f"e{i}" for i in range(MAX_EMBED_INPUTS)]}
        assert http.post("/api/embed", json=at_cap).status_code == 200


# ---- model allow-lists, listings, keep_alive ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", generate(LLAMA)),
        ("/api/chat", {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/chat/completions", {"model": LLAMA, "messages": [{"role": "user", "content": "x"}]}),
        ("/api/show", {"model": LLAMA}),
    ],
)
def test_a_key_cannot_use_a_model_outside_its_allow_list(
    attack: Attack, path: str, body: dict[str, Any]
) -> None:
    with attack.client("bob") as http:
        assert "may not use model" in assert_json_error(http.post(path, json=body), 403)


def test_listings_show_only_the_keys_own_models(attack: Attack) -> None:
    with attack.client("alice") as http:
        assert http.post("/api/generate", json=generate(LLAMA)).status_code == 200
    with attack.client("bob") as http:
        tags = [m["name"] for m in http.get("/api/tags").json()["models"]]
        assert tags
        assert all(name.startswith("qwen2.5:") for name in tags), tags
        openai = [m["id"] for m in http.get("/v1/models").json()["data"]]
        assert all(name.startswith("qwen2.5:") for name in openai), openai
        loaded = [m["name"] for m in http.get("/api/ps").json()["models"]]
        assert LLAMA not in loaded
        assert http.get(f"/v1/models/{LLAMA}").status_code in (403, 404)


def test_an_ordinary_key_cannot_unload_or_pin_a_model(attack: Attack) -> None:
    unload = {"model": LLAMA, "keep_alive": 0}
    with attack.client("alice") as http:
        assert "admin" in assert_json_error(http.post("/api/generate", json=unload), 403)
        pin = generate(LLAMA, keep_alive="876000h")
        assert http.post("/api/generate", json=pin).status_code == 200
        # The gateway's /api/ps joins what its poll of each instance last saw: the
        # load just made shows up at the next poll.
        model = poll(
            lambda: next(
                (m for m in http.get("/api/ps").json()["models"] if m["name"] == LLAMA), None
            ),
            timeout=60,
            what=f"{LLAMA} listed by /api/ps",
        )
    # Pinned at most for the operator's maximum (slack: the request's own time).
    expires = datetime.strptime(model["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")
    left = expires.replace(tzinfo=UTC) - datetime.now(UTC)
    assert left <= timedelta(seconds=KEEP_ALIVE_MAX_SECONDS + 120), model["expires_at"]
    with attack.client("ops") as http:
        assert http.post("/api/generate", json=unload).status_code == 200


# ---- paths, redirects, URLs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/v1/models/x%2fy%2fz/../../../_emulator/scheduler", 400),
        ("/v1/models/..%2f..%2f_emulator%2fstate", 400),
        ("/api/%2e%2e/admin/queue", 400),
        ("//admin/queue", 400),
        ("/metrics", 404),
        ("/ready", 404),
        ("/_emulator/state", 404),
        ("/openapi.json", 404),
        ("/api/generate/", 404),
        ("/admin/queue/", 404),
    ],
)
def test_path_tricks_never_reach_upstream_paths(attack: Attack, target: str, status: int) -> None:
    request = (
        f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Authorization: Bearer {attack.keys['ops']}\r\n\r\n"
    ).encode()
    code, headers, body = attack.raw(request)
    assert code == status, body
    assert headers["content-type"].startswith("application/json")
    assert "location" not in headers
    assert set(json.loads(body)) == {"error"}


def test_a_key_in_the_url_is_refused(attack: Attack) -> None:
    with attack.client() as http:
        for query in (f"api_key={attack.keys['carol']}", f"key={attack.keys['carol']}"):
            assert "never goes in the URL" in assert_json_error(http.get(f"/api/tags?{query}"), 400)


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /api/tags%00 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /api/tags HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: " + b"r" * 20000 + b"\r\n\r\n",
        b"POST /api/chat HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nX-LLM-Priority: batch\x01\r\n"
        b"Content-Length: 2\r\n\r\n{}",
    ],
    ids=["nul", "huge-header", "cl-and-te", "control-byte"],
)
def test_malformed_requests_get_json_errors(attack: Attack, raw: bytes) -> None:
    code, headers, body = attack.raw(raw)
    assert code == 400, body
    assert headers["content-type"].startswith("application/json")
    assert set(json.loads(body)) == {"error"}


# ---- one key cannot change what another is served, limited or charged ------------------------


def test_the_cache_is_not_shared_across_keys(attack: Attack) -> None:
    body = generate(LLAMA, prompt=f"alice's private prompt {time.monotonic_ns()}")
    with attack.client("alice") as http:
        assert http.post("/api/generate", json=body).headers["x-cache"] == "MISS"
        assert http.post("/api/generate", json=body).headers["x-cache"] == "HIT"
    with attack.client("carol") as http:
        first = http.post("/api/generate", json=body)
        assert first.status_code == 200
        assert first.headers["x-cache"] == "MISS"
        assert "age" not in first.headers


def test_another_keys_traffic_never_erases_a_quota_debt(attack: Attack) -> None:
    with attack.client("tiny") as http:

        def refused() -> httpx.Response | None:
            reply = http.post("/api/generate", json=generate(LLAMA, options={"num_predict": 64}))
            return reply if reply.status_code == 429 else None

        first = poll(refused, 60, "tiny's token quota to run out", interval=0.05)
        retry_after = int(first.headers["retry-after"])
        assert retry_after >= 1
    state = attack.state_redis()
    # Another key fills the cache with the biggest answers it may ask for.
    with attack.client("carol") as http:
        for index in range(20):
            inputs = [f"fill {index} {i}" * 50 for i in range(MAX_EMBED_INPUTS)]
            assert http.post("/api/embed", json={"model": EMBED, "input": inputs}).is_success
    with attack.client("tiny") as http:
        again = http.post("/api/generate", json=generate(LLAMA))
        assert again.status_code == 429, again.text
    assert state.info("stats")["evicted_keys"] == 0
    assert state.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"


def test_a_client_that_disconnects_mid_stream_leaves_the_stack_serving(attack: Attack) -> None:
    body = generate(LLAMA, stream=True, options={"temperature": 0.7})
    with attack.client("carol") as http:
        with http.stream("POST", "/api/generate", json=body) as reply:
            assert reply.status_code == 200
            next(reply.iter_lines())
        # The connection above is closed mid-answer; the next one is served.
        assert http.post("/api/generate", json=generate()).status_code == 200


# ---- nothing secret in any log ---------------------------------------------------------------


def test_no_key_or_password_in_any_log_of_the_run(attack: Attack) -> None:
    # The probes that put secrets on the wire in odd places, then every log.
    carol = attack.keys["carol"]
    with attack.client() as http:
        http.get(f"/api/tags?api_key={carol}")
        http.get(f"/api/{carol}")
        http.get("/api/tags", headers={"X-API-Key": carol + "-wrong"})
    for header in (f"Bearer {carol}\x01", f"Bearer {carol}" + "k" * 20000):
        attack.raw(
            b"GET /api/tags HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            + b"Authorization: "
            + header.encode()
            + b"\r\n\r\n"
        )
    marker = f"log-flush-{time.monotonic_ns()}"
    with attack.client("carol") as http:
        http.get("/api/tags", headers={"X-Request-ID": marker})
    logs = sorted(p for p in (attack.workdir / "logs").iterdir() if p.is_file())
    access = attack.workdir / "logs" / "nginx-access.log"
    poll(lambda: marker in access.read_text() or None, 10, "the access log line")
    names = {p.name for p in logs}
    assert {"nginx-access.log", "nginx-error.log", "gateway-0.log", "redis.log"} <= names
    assert any(name.startswith("ollama-") for name in names)
    leaks = [
        f"{what} in {path.name}"
        for path in logs
        for what, secret in attack.secrets().items()
        if secret in path.read_text(errors="replace")
    ]
    assert leaks == []
