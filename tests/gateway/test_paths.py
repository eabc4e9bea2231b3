"""Paths: no redirect ever, nothing but the parsed parameters reaches the upstream's path,
and every error the gateway gives is JSON.

A trailing slash is a 404 (never a `Location` built from the client's `Host`); a path
whose decoded form has `..`, `//` or an encoded slash is a 400 before anything else.
"""

from __future__ import annotations

import socket

import httpx
import orjson
import pytest
from llm_gateway.routes import PROXY_ROUTES

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayProcess


def raw_request(port: int, request: bytes, wait: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as bytes (no client normalises it); status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                break
            data += part
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            part = sock.recv(65536)
            if not part:
                break
            body += part
    return int(lines[0].split()[1]), headers, body


def get(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    request = f"GET {target} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    return raw_request(port, request.encode("latin-1"))


OPS_PATHS = [("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics"), ("GET", "/openapi.json")]
ADMIN_PATHS = [("GET", "/admin/queue"), ("GET", "/admin/usage")]
ALL_ROUTES = [
    (route.methods[0], route.path.replace("{model:path}", "llama3.2"))
    for route in PROXY_ROUTES
    if route.path != "/"
] + OPS_PATHS + ADMIN_PATHS  # fmt: skip


@pytest.mark.parametrize(("method", "path"), ALL_ROUTES)
def test_a_trailing_slash_is_a_json_404_never_a_redirect(
    gateway: GatewayProcess, method: str, path: str
) -> None:
    body = b'{"model": "llama3.2", "prompt": "secret"}' if method == "POST" else b""
    request = (
        f"{method} {path}/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    status, headers, content = raw_request(gateway.port, request)
    assert status == 404, (status, headers)
    assert "location" not in headers
    assert headers["content-type"].startswith("application/json")
    error = orjson.loads(content)["error"]
    assert "no such endpoint" in (error["message"] if isinstance(error, dict) else error)


@pytest.mark.parametrize(
    "target",
    [
        "/v1/models/x%2fy%2fz/../../../_emulator/scheduler",
        "/v1/models/x%2Fy%2Fz/..%2F..%2F..%2F_emulator%2Fstats",
        "/v1/models/..%2f_emulator%2fstats",
        "/v1/models/%2e%2e/%2e%2e/_emulator/stats",
        "/v1/models/a//b",
        "/v1/models/..",
        "/v1//models",
        "/api/tags/../_emulator/stats",
        "/v1/models/x%5c..%5c_emulator%5cstats",
    ],
)
def test_paths_that_could_escape_are_refused(gateway: GatewayProcess, target: str) -> None:
    status, headers, content = get(gateway.port, target)
    assert status in (400, 404), (status, content[:200])
    assert headers["content-type"].startswith("application/json")
    assert b"settings" not in content
    assert b"requests" not in content
    assert "location" not in headers


def test_the_model_of_a_model_path_is_sent_as_one_encoded_segment(
    gateway: GatewayProcess, emulator: Emulator
) -> None:
    status, _, content = get(gateway.port, "/v1/models/llama3.2")
    assert status == 200, content
    assert orjson.loads(content)["id"] == "llama3.2"
    status, _, content = get(gateway.port, "/v1/models/llama3.2:latest")
    assert status == 200, content
    assert emulator.count("GET /v1/models/llama3.2:latest") == 1


@pytest.mark.parametrize("path", ["/nope", "/api/nope", "/v1/nope"])
def test_unknown_paths_and_methods_are_json(client: httpx.Client, path: str) -> None:
    for response in (client.get(path), client.delete("/api/generate"), client.put("/v1/models")):
        assert response.status_code in (404, 405)
        assert response.headers["content-type"].startswith("application/json")
        assert "error" in response.json()


def test_a_request_uvicorn_cannot_parse_gets_a_json_400(gateway: GatewayProcess) -> None:
    """A control byte in a header: refused before the app sees it, in JSON all the same."""
    request = (
        b"GET /api/tags HTTP/1.1\r\nHost: x\r\nX-LLM-Priority: batch\x01\r\n"
        b"Connection: close\r\n\r\n"
    )
    status, headers, content = raw_request(gateway.port, request)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert "error" in orjson.loads(content)


def test_a_refused_request_says_nothing_of_the_cache(client: httpx.Client) -> None:
    refused = client.post("/api/generate", content=b"{not json")
    assert refused.status_code == 400
    assert "x-cache" not in refused.headers
    served = client.post("/api/generate", json={"model": "llama3.2", "prompt": "x"})
    assert served.headers["x-cache"] == "BYPASS"
