"""Nothing an upstream sends can lock a key out: whatever comes back (an HTML 502 from a
proxy, nothing, cut JSON, binary, a wrong content type, any status, streamed or not),
the request's concurrency slot is freed, its usage counted exactly once, its error
given as JSON, and no task is left failing in the background.

A property test: hypothesis writes the upstream's answers, a scripted upstream sends
them to a real gateway in front of a real Redis, with a key allowed one request at a
time (a leaked slot shows as a 429 on the next request).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.test_quotas import Keys
from tests.support.gateway import GatewayFactory
from tests.support.redis_server import RedisServer
from tests.support.scripted_ollama import Connection, ScriptedOllama, Seen, chunked

HTML = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\r\n"
BODIES = [
    HTML,
    b"",
    b'{"model":"llama3.2","response":"cut in the mid',
    b'{"model":"llama3.2","response":"a","done":false}\n{"model":"llama3.2","resp',
    b'{"done":true,"eval_count":"many","prompt_eval_count":null}',
    b'1\n2\n[3]\n"four"\n',
    b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: [1]\n\ndata: nope\n\n',
    b'data: {"choices": 7}\n\n',
    b'{"error":"model requires more system memory"}',
]
CONTENT_TYPES = [
    "application/json",
    "application/x-ndjson",
    "text/event-stream",
    "text/html",
    "application/octet-stream",
    None,
]
STATUSES = [200, 201, 204, 301, 400, 404, 429, 500, 502, 503, 504]
REASONS = {200: "OK", 204: "No Content", 502: "Bad Gateway"}


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: bytes
    framing: str  # length | short (cut) | chunked | close

    def wire(self) -> bytes:
        head = b"HTTP/1.1 %d %s\r\n" % (self.status, REASONS.get(self.status, "X").encode())
        if self.content_type is not None:
            head += b"content-type: " + self.content_type.encode() + b"\r\n"
        if self.framing == "length":
            return head + b"content-length: %d\r\n\r\n" % len(self.body) + self.body
        if self.framing == "short":
            return head + b"content-length: %d\r\n\r\n" % (len(self.body) + 10) + self.body
        if self.framing == "chunked":
            parts = [self.body[i : i + 7] for i in range(0, len(self.body), 7)]
            return head + b"transfer-encoding: chunked\r\n\r\n" + chunked(parts)
        return head + b"connection: close\r\n\r\n" + self.body


answers = st.builds(
    Answer,
    st.sampled_from(STATUSES),
    st.sampled_from(CONTENT_TYPES),
    st.one_of(st.sampled_from(BODIES), st.binary(max_size=300)),
    st.sampled_from(["length", "short", "chunked", "close"]),
)
REQUESTS = [
    ("/api/generate", {"stream": True}),
    ("/api/generate", {"stream": False}),
    ("/api/chat", {"stream": True}),
    ("/v1/chat/completions", {"stream": True}),
    ("/v1/chat/completions", {"stream": False}),
    ("/api/embed", {}),
]


def _body(path: str, extra: dict[str, object], n: int) -> dict[str, object]:
    text = f"question {n}"
    if path == "/api/embed":
        return {"model": "llama3.2", "input": text}
    if path == "/api/generate":
        return {"model": "llama3.2", "prompt": text, **extra}
    return {"model": "llama3.2", "messages": [{"role": "user", "content": text}], **extra}


def _settled(state: redis.Redis, requests: int, timeout: float = 10.0) -> tuple[int, int]:
    """(slots held, requests counted) once the settlement is in (or the bound passed)."""
    deadline = time.monotonic() + timeout
    while True:
        held = state.zcard("llm:cc:team")
        counted = sum(
            int(value)
            for key in state.scan_iter(match="llm:usage:*")
            for field, value in state.hgetall(key).items()
            if field.endswith(b"|requests")
        )
        if (held == 0 and counted == requests) or time.monotonic() > deadline:
            return held, counted
        time.sleep(0.02)


def _router_idle(
    http: httpx.Client, admin: dict[str, str], timeout: float = 10.0
) -> dict[str, int]:
    """Requests queued and in flight on the router, once both are 0 (or the bound passed)."""
    deadline = time.monotonic() + timeout
    while True:
        snapshot = http.get("/admin/queue", headers=admin).json()
        busy = {
            "queued": snapshot["queued"],
            "in_flight": sum(i["in_flight"] for i in snapshot["instances"]),
        }
        if not any(busy.values()) or time.monotonic() > deadline:
            return busy
        time.sleep(0.02)


ROUTED = {
    "GATEWAY_ROUTING": "model-aware",
    "GATEWAY_POLL_SECONDS": "0.2",
    "GATEWAY_QUEUE_DEADLINE_SECONDS": "3",
    "GATEWAY_SHARE_IN_FLIGHT": "false",
}


@pytest.mark.parametrize("routing", ["upstream", "model-aware"])
def test_nothing_an_upstream_sends_leaks_a_slot_or_a_usage_record(
    tmp_path: Path, gateway_factory: GatewayFactory, own_redis: RedisServer, routing: str
) -> None:
    """Model-aware routing: nor a router slot or a queue position (an instance that
    answers junk is still the one that answered: no retry, no slot kept)."""
    current: list[Answer] = []

    async def script(seen: Seen, connection: Connection) -> None:
        await connection.send(current[-1].wire())
        connection.close()

    keys = Keys(
        tmp_path,
        team="    maxConcurrent: 1\n    tokensPerMinute: 10000000\n",
        ops="    admin: true\n",
    )
    state = own_redis.client()
    numbers = itertools.count(1)
    with ScriptedOllama(script) as upstream:
        gateway = gateway_factory(
            GATEWAY_UPSTREAM_URL=upstream.url,
            GATEWAY_REDIS_URL=own_redis.url,
            GATEWAY_AUTH_DISABLED="false",
            GATEWAY_API_KEYS_FILE=str(keys.file),
            GATEWAY_IDLE_TIMEOUT_SECONDS="5",
            **(
                {**ROUTED, "GATEWAY_OLLAMA_INSTANCES": upstream.url}
                if routing != "upstream"
                else {}
            ),
        )
        http = httpx.Client(base_url=gateway.url, headers=keys.auth("team"), timeout=30)

        @settings(
            max_examples=60,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(answer=answers, request=st.sampled_from(REQUESTS))
        def one(answer: Answer, request: tuple[str, dict[str, object]]) -> None:
            current.append(answer)
            n = next(numbers)
            path, extra = request
            reply = http.post(path, json=_body(path, extra, n))
            assert "too many concurrent requests" not in reply.text, answer
            if reply.status_code != 200:
                assert reply.headers["content-type"].startswith("application/json"), (
                    answer,
                    reply.headers,
                    reply.content[:200],
                )
                assert "error" in reply.json()
            assert _settled(state, n) == (0, n), answer
            if routing != "upstream":
                assert _router_idle(http, keys.auth("ops")) == {"queued": 0, "in_flight": 0}

        try:
            one()
        finally:
            http.close()
        log = gateway.log_text()
    for sign in ("Traceback", "never retrieved", "unhandled error", "flight failed"):
        assert sign not in log, log[-3000:]
