"""The edge against hostile requests, live: raw bytes over TLS to the real nginx.

Each request here is one a client library would refuse to send (a NUL in the target,
Content-Length with Transfer-Encoding, a control byte in a header, a 20 KB header),
so they go out as written on a TLS socket and the answer is read with the standard
library's response parser. The stand-in behind the edge (tests/nginx/echo_backend.py)
marks its answers with `X-Backend-Port`: a refusal without it is the edge's own.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest

from tests.nginx.conftest import EchoBackend, generous_edge
from tests.support.nginx_server import NginxServer, TlsFiles

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process

KEY = "llmsk-" + "Zk3" * 14


@pytest.fixture(scope="module")
def edge(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles, backend: EchoBackend
) -> Iterator[NginxServer]:
    yield from generous_edge(tmp_path_factory, tls_files, backend, max_body_mb=1)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def from_backend(self) -> bool:
        return "x-backend-port" in self.headers

    def json(self) -> dict[str, object]:
        value = orjson.loads(self.body)
        assert isinstance(value, dict)
        return value


def send_raw(edge: NginxServer, raw: bytes, *, tls: bool = True) -> Answer:
    """`raw` as written, on a fresh connection; the answer parsed by http.client."""
    port = edge.https_port if tls else edge.http_port
    plain = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock: socket.socket = plain
    if tls:
        context = ssl.create_default_context(cafile=str(edge.tls.ca_file))
        sock = context.wrap_socket(plain, server_hostname="localhost")
    with sock:
        sock.sendall(raw)
        reply = http.client.HTTPResponse(sock, method="GET")
        reply.begin()
        return Answer(reply.status, reply.headers, reply.read())


def request(
    target: str | bytes,
    *,
    method: bytes = b"GET",
    headers: dict[bytes, bytes] | None = None,
    body: bytes = b"",
    version: bytes = b"HTTP/1.1",
) -> bytes:
    path = target.encode() if isinstance(target, str) else target
    lines = [method + b" " + path + b" " + version, b"Host: localhost", b"Connection: close"]
    lines += [name + b": " + value for name, value in (headers or {}).items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def assert_edge_json_error(answer: Answer, status: int) -> str:
    assert answer.status == status, answer.body
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    body = answer.json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    assert body["error"]
    assert not answer.from_backend
    # The security headers go on refusals too.
    assert answer.headers["x-content-type-options"] == "nosniff"
    return body["error"]


def test_the_raw_client_reaches_the_backend_with_a_sane_request(edge: NginxServer) -> None:
    """Control for every refusal below: the same helper, a plain request, a 200."""
    answer = send_raw(edge, request("/api/tags"))
    assert answer.status == 200
    assert answer.from_backend


# ---- F7: every status the edge produces is a JSON error ---------------------------------


POST = b"POST"
MALFORMED = {
    "NUL in the target": (request(b"/api/tags%00"), 400),
    "raw NUL in the target": (request(b"/api/\x00tags"), 400),
    "garbage request line": (b"GARBAGE\r\n\r\n", 400),
    "bad Content-Length": (
        request("/api/chat", method=POST, headers={b"Content-Length": b"abc"}),
        400,
    ),
    "Content-Length with Transfer-Encoding": (
        request(
            "/api/chat",
            method=POST,
            headers={b"Content-Length": b"5", b"Transfer-Encoding": b"chunked"},
            body=b"0\r\n\r\n",
        ),
        400,
    ),
    "NUL in a header value": (
        request("/api/tags", headers={b"Authorization": b"Bearer \xff\xfe\x00"}),
        400,
    ),
    "20 KB header": (
        request("/api/tags", headers={b"Authorization": b"Bearer " + b"k" * 20_000}),
        400,
    ),
    "10 KB request id": (request("/api/tags", headers={b"X-Request-ID": b"r" * 10_000}), 400),
    "target over the header buffers": (request("/api/" + "a" * 20_000), 414),
    "unknown transfer coding": (
        request("/api/chat", method=POST, headers={b"Transfer-Encoding": b"gzip"}),
        501,
    ),
    "HTTP/2.0 request line": (request("/api/tags", version=b"HTTP/2.0"), 505),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_requests_get_json_errors(edge: NginxServer, name: str) -> None:
    raw, status = MALFORMED[name]
    assert_edge_json_error(send_raw(edge, raw), status)


@pytest.mark.parametrize("header", [b"X-LLM-Priority", b"Authorization", b"User-Agent", b"Accept"])
def test_a_control_byte_in_a_forwarded_header_is_refused_at_the_edge(
    edge: NginxServer, header: bytes
) -> None:
    answer = send_raw(edge, request("/api/tags", headers={header: b"batch\x01"}))
    assert "control character" in assert_edge_json_error(answer, 400)


def test_a_header_the_gateway_does_not_read_never_reaches_it(edge: NginxServer) -> None:
    raw = request("/api/tags", headers={b"X-Anything": b"odd\x01value", b"Cookie": b"c=1"})
    answer = send_raw(edge, raw)
    assert answer.status == 200
    assert answer.from_backend
    seen = answer.json()["headers"]
    assert isinstance(seen, dict)
    assert "x-anything" not in seen
    assert "cookie" not in seen


def test_the_headers_the_gateway_reads_reach_it(edge: NginxServer) -> None:
    sent = {
        b"Authorization": b"Bearer " + KEY.encode(),
        b"X-API-Key": KEY.encode(),
        b"Content-Type": b"application/json",
        b"Accept": b"application/x-ndjson",
        b"User-Agent": b"probe/1",
        b"Cache-Control": b"no-cache",
        b"X-LLM-Priority": b"batch",
        b"traceparent": b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        b"tracestate": b"k=v",
        b"X-Request-ID": b"hdr-1",
    }
    body = b'{"model":"m"}'
    sent[b"Content-Length"] = str(len(body)).encode()
    answer = send_raw(edge, request("/api/chat", method=b"POST", headers=sent, body=body))
    assert answer.status == 200
    assert answer.from_backend
    seen = answer.json()
    headers = seen["headers"]
    assert isinstance(headers, dict)
    for name, value in sent.items():
        assert headers[name.decode().lower()] == value.decode(), name
    assert seen["body_bytes"] == len(body)


def test_a_tab_in_a_header_value_is_allowed(edge: NginxServer) -> None:
    answer = send_raw(edge, request("/api/tags", headers={b"User-Agent": b"a\tb"}))
    assert answer.status == 200
    assert answer.from_backend


# ---- F2/F3: paths that resolve differently upstream are refused ---------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/v1/models/x%2fy%2fz/../../../_emulator/scheduler",
        "/v1/models/x%2Fy",
        "/v1/models/..%2f..%2f_emulator%2fstate",
        "/api/../admin/queue",
        "/api/%2e%2e/admin/queue",
        "/api/.%2E/metrics",
        "/api/x/..",
        "//admin/queue",
        "/admin//queue",
        "/api/%5c..%5cmetrics",
        "/v1/models/qwen2.5:0.5b/../../llama3.2:1b",
    ],
)
def test_dot_segments_empty_segments_and_encoded_slashes_are_refused(
    edge: NginxServer, target: str
) -> None:
    for tls in (True, False):
        answer = send_raw(edge, request(target), tls=tls)
        assert "refused path" in assert_edge_json_error(answer, 400)


@pytest.mark.parametrize("target", ["/v1/models/qwen2.5:0.5b", "/api/tags?since=1.5d", "/"])
def test_single_dots_in_names_pass(edge: NginxServer, target: str) -> None:
    answer = send_raw(edge, request(target))
    assert answer.status == 200
    assert answer.from_backend


def test_plain_http_redirects_nowhere_but_the_configured_name(edge: NginxServer) -> None:
    raw = request("/api/tags").replace(b"Host: localhost", b"Host: evil.example")
    answer = send_raw(edge, raw, tls=False)
    assert answer.status == 301
    assert answer.headers["location"] == f"https://localhost:{edge.https_port}/api/tags"


# ---- F4: nothing secret in the logs ---------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        f"/api/tags?api_key={KEY}",
        f"/api/tags?key={KEY}",
        f"/api/tags?x=1&token={KEY}",
        "/api/tags?password=hunter2-secret",
        f"/api/{KEY}",
        f"/v1/models?API-KEY={KEY}",
    ],
)
def test_a_credential_in_the_url_is_refused_and_never_logged(
    edge: NginxServer, target: str
) -> None:
    for tls in (True, False):
        answer = send_raw(edge, request(target), tls=tls)
        assert "never goes in the URL" in assert_edge_json_error(answer, 400)
        assert "location" not in answer.headers
    secret = target.rsplit("=", 1)[-1] if "=" in target else KEY
    marker = f"log-probe-{abs(hash(target))}"
    send_raw(edge, request(target, headers={b"X-Request-ID": marker.encode()}))
    entry = edge.wait_for_log(lambda e: e["request_id"] == marker)
    assert secret not in orjson.dumps(entry).decode()
    for path in (edge.access_log_path, edge.error_log_path):
        if path.exists():
            assert secret not in path.read_text(errors="replace"), path


def test_the_access_log_keeps_the_path_without_the_query(edge: NginxServer) -> None:
    send_raw(
        edge, request("/admin/usage?since=7d&by=key", headers={b"X-Request-ID": b"log-path-1"})
    )
    entry = edge.wait_for_log(lambda e: e["request_id"] == "log-path-1")
    assert entry["uri"] == "/admin/usage"
    assert entry["status"] == 200


def test_the_admin_usage_key_name_filter_still_passes(edge: NginxServer) -> None:
    """`key=<name>` names a key in /admin/usage; only a key itself is refused."""
    answer = send_raw(edge, request("/admin/usage?since=7d&by=key&key=ops"))
    assert answer.status == 200
    assert answer.from_backend


@pytest.mark.parametrize(
    "target", ["/api/generate/", "/v1/chat/completions/", "/admin/queue/", "/api/tags/?x=1"]
)
def test_a_trailing_slash_is_a_json_404_never_a_redirect(edge: NginxServer, target: str) -> None:
    for method in (b"GET", b"POST"):
        answer = send_raw(edge, request(target, method=method, headers={b"Content-Length": b"0"}))
        assert assert_edge_json_error(answer, 404) == "not found"
        assert "location" not in answer.headers


def test_the_root_path_still_reaches_the_gateway(edge: NginxServer) -> None:
    answer = send_raw(edge, request("/"))
    assert answer.status == 200
    assert answer.from_backend
