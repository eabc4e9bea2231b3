"""Bad input, tried for real: every hostile request gets a clear 4xx, nothing crashes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayFactory, GatewayProcess
from tests.support.redis_server import RedisServer


@pytest.fixture
def small_gateway(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> GatewayProcess:
    return gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_MAX_BODY_BYTES="4096",
        GATEWAY_MAX_MESSAGES="100",
    )


def raw(port: int, request: bytes, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                break
            data += part
        return data


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "missing request body"),
        (b"{bad json", 400, "invalid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"prompt": "no model"}', 400, "model is required"),
        (b'{"model": 42}', 400, "model is required"),
        (b'{"model": "llama3.2\\r\\nX-Injected: 1", "prompt": "x"}', 400, "invalid model name"),
        (b"[" * 5000 + b"]" * 5000, 400, "invalid JSON"),
        (b'{"model": "llama3.2", "prompt": "\xff\xfe"}', 400, "invalid JSON"),
    ],
)
def test_malformed_bodies(client: httpx.Client, body: bytes, status: int, message: str) -> None:
    response = client.post(
        "/api/generate", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert message in response.json()["error"]
    assert response.headers["x-request-id"]


def test_openai_paths_answer_in_openai_shape(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", content=b"{nope")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}


def test_unknown_paths_and_methods(client: httpx.Client) -> None:
    missing = client.get("/api/nothing")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no such endpoint: /api/nothing"}
    wrong = client.get("/api/generate")
    assert wrong.status_code == 405
    assert wrong.json() == {"error": "method not allowed"}
    assert client.delete("/api/tags").status_code == 405


def test_oversized_body_is_refused_before_it_is_read(
    small_gateway: GatewayProcess, emulator: Emulator
) -> None:
    # The gigabyte never comes: an answer at all means the gateway did not wait for it
    # (a gateway reading the body would leave `raw` to time out with nothing).
    answer = raw(
        small_gateway.port,
        b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000000000\r\n\r\n{"model":',
        wait=60.0,
    )
    assert answer.startswith(b"HTTP/1.1 413")
    chunked = httpx.post(
        f"{small_gateway.url}/api/generate",
        content=iter([b'{"model":"llama3.2","prompt":"', b"x" * 3000, b"y" * 3000, b'"}']),
    )
    assert chunked.status_code == 413
    assert "limit 4096 bytes" in chunked.json()["error"]
    assert emulator.count("POST /api/generate") == 0


def test_huge_messages_array_is_refused(small_gateway: GatewayProcess) -> None:
    messages = [{"role": "user"}] * 101
    response = httpx.post(
        f"{small_gateway.url}/api/chat", json={"model": "llama3.2", "messages": messages}
    )
    assert response.status_code == 400
    assert "too many messages" in response.json()["error"]


def test_hostile_headers(
    gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS="a" * 64,
    )
    body = b'{"model":"llama3.2","prompt":"x"}'
    for key in (b"\xc3\xa9t\xc3\xa9", b"k" * 5000, b"\x01\x02", b"Bearer Bearer"):
        answer = raw(
            gateway.port,
            b"POST /api/generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + key
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body,
        )
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:200]
    # A CR/LF smuggled into a header never gets past the HTTP parser.
    answer = raw(gateway.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-API-Key: a\rb\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    # A request id that is not safe to echo is replaced by one of ours.
    response = httpx.get(f"{gateway.url}/health", headers={"X-Request-ID": "<script>"})
    assert response.status_code == 200
    evil = httpx.post(f"{gateway.url}/api/tags", headers={"X-Request-ID": "x" * 500})
    assert len(evil.headers["x-request-id"]) == 32
    kept = httpx.post(f"{gateway.url}/api/generate", headers={"X-Request-ID": "req-123"})
    assert kept.headers["x-request-id"] == "req-123"


def test_request_id_is_passed_upstream_and_logged(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    client.post(
        "/api/generate",
        json={"model": "llama3.2", "prompt": "trace me", "stream": False},
        headers={"X-Request-ID": "trace-42"},
    )
    deadline = time.monotonic() + 3
    while not any(line.get("request_id") == "trace-42" for line in gateway.access_log()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    line = next(line for line in gateway.access_log() if line.get("request_id") == "trace-42")
    assert line["status"] == 200
    assert line["model"] == "llama3.2"
    assert "prompt" not in line  # prompts are not logged unless GATEWAY_LOG_PROMPTS=true
    assert orjson.dumps(line).count(b"trace me") == 0
