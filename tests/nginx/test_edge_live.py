"""The TLS edge, live: the real nginx on loopback in front of stand-in gateways.

The stand-in (tests/nginx/echo_backend.py) answers 200 on every path and echoes what
reached it, so each refusal seen here is nginx's and each header is what nginx sent.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.nginx.conftest import EchoBackend, EchoFactory, generous_edge, generous_limits
from tests.nginx.stacks import small_stack
from tests.support.nginx_server import NginxFactory, NginxServer, TlsFiles
from tests.support.ports import free_port

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process

BODY_CAP_MB = 2
GENEROUS_LIMITS = generous_limits(BODY_CAP_MB)


@pytest.fixture(scope="module")
def edge(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles, backend: EchoBackend
) -> Iterator[NginxServer]:
    """One edge for the tests that do not depend on the rate limit (set out of reach)."""
    yield from generous_edge(tmp_path_factory, tls_files, backend, max_body_mb=BODY_CAP_MB)


@pytest.fixture
def client(edge: NginxServer) -> Iterator[httpx.Client]:
    with edge.client() as http:
        yield http


def assert_json_error(reply: httpx.Response, status: int) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    assert body["error"]
    return str(body["error"])


# ---- TLS and redirects ------------------------------------------------------------------


def test_https_works_with_the_test_ca(client: httpx.Client, backend: EchoBackend) -> None:
    reply = client.get("/api/tags")
    assert reply.status_code == 200
    echoed = reply.json()
    assert echoed["port"] == backend.port
    assert echoed["path"] == "/api/tags"
    assert reply.extensions["http_version"] == b"HTTP/1.1"


def test_the_certificate_is_only_trusted_through_the_test_ca(edge: NginxServer) -> None:
    with (
        httpx.Client(base_url=edge.https_url, timeout=5) as untrusting,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        untrusting.get("/api/tags")


def _handshake(port: int, version: ssl.TLSVersion, ca_file: Path) -> str | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca_file))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    # Level 0 lets this client offer TLS 1.0/1.1 at all (OpenSSL 3 hides them by default).
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version()


def _old_tls_server(tls_files: TlsFiles) -> tuple[socket.socket, threading.Thread]:
    """A server that does accept TLS 1.1: proof that the client below can speak it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls_files.cert_file), str(tls_files.key_file))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_only_tls_1_2_and_1_3_are_accepted(edge: NginxServer, tls_files: TlsFiles) -> None:
    listener, thread = _old_tls_server(tls_files)
    try:
        control = _handshake(listener.getsockname()[1], ssl.TLSVersion.TLSv1_1, tls_files.ca_file)
    finally:
        thread.join(timeout=10)
        listener.close()
    assert control == "TLSv1.1"
    with pytest.raises(ssl.SSLError, match=r"(?i)protocol.version|no protocols"):
        _handshake(edge.https_port, ssl.TLSVersion.TLSv1_1, tls_files.ca_file)
    assert _handshake(edge.https_port, ssl.TLSVersion.TLSv1_2, tls_files.ca_file) == "TLSv1.2"
    assert _handshake(edge.https_port, ssl.TLSVersion.TLSv1_3, tls_files.ca_file) == "TLSv1.3"


def test_http_redirects_to_https_at_the_configured_name(edge: NginxServer) -> None:
    reply = httpx.get(f"{edge.http_url}/api/tags?verbose=1", timeout=5)
    assert reply.status_code == 301
    # The configured hostname, not the Host the client sent (127.0.0.1 here).
    assert reply.headers["location"] == f"https://localhost:{edge.https_port}/api/tags?verbose=1"
    # ...and the redirect leads somewhere that works.
    with edge.client(follow_redirects=True) as http:
        followed = http.get(f"{edge.http_url}/api/tags")
    assert followed.status_code == 200
    assert followed.url.scheme == "https"


def test_the_redirect_ignores_a_forged_host(edge: NginxServer) -> None:
    reply = httpx.get(f"{edge.http_url}/api/tags", headers={"Host": "evil.example"}, timeout=5)
    assert reply.status_code == 301
    assert reply.headers["location"] == f"https://localhost:{edge.https_port}/api/tags"


def test_plain_http_on_the_tls_port_gets_a_json_400(edge: NginxServer) -> None:
    reply = httpx.get(f"http://127.0.0.1:{edge.https_port}/api/ps", timeout=5)
    message = assert_json_error(reply, 400)
    assert "HTTPS" in message
    assert "location" not in reply.headers


# ---- what passes and what does not -------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/health", "/api/tags", "/api/version", "/v1/models"])
def test_api_paths_reach_the_gateway(client: httpx.Client, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 200
    assert reply.json()["path"] == path


def test_head_slash_reaches_the_gateway(client: httpx.Client) -> None:
    assert client.head("/").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/ready",
        "/_emulator/stats",
        "/_admin",
        "/%6detrics",
        "/unknown",
        "/v2/models",
    ],
)
def test_ops_admin_and_unknown_paths_are_404_from_outside(
    client: httpx.Client, backend: EchoBackend, path: str
) -> None:
    # The request target goes out exactly as written (httpx would normalize the URL).
    reply = client.get("/", extensions={"target": path.encode()})
    assert_json_error(reply, 404)
    assert "x-backend-port" not in reply.headers


def test_the_stand_in_would_have_answered_those_paths(backend: EchoBackend) -> None:
    """Control for the test above: the 404s are nginx's, not the backend's."""
    for path in ("/metrics", "/ready", "/_emulator/stats"):
        assert httpx.get(f"{backend.url}{path}", timeout=5).status_code == 200


def test_security_headers_on_proxied_and_refused_responses(client: httpx.Client) -> None:
    for reply in (client.get("/api/tags"), client.get("/metrics")):
        assert reply.headers["strict-transport-security"] == "max-age=31536000"
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["x-frame-options"] == "DENY"
        assert reply.headers["referrer-policy"] == "no-referrer"
        # server_tokens off: no version.
        assert reply.headers["server"] == "nginx"


def test_forwarded_headers_are_set_by_the_edge_not_the_client(client: httpx.Client) -> None:
    reply = client.get(
        "/api/tags", headers={"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"}
    )
    seen = reply.json()["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-real-ip"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["host"] == "localhost"
    # HTTP/1.1 keepalive to the gateway: nginx must not send `Connection: close`.
    assert seen.get("connection", "") == ""


# ---- X-Request-ID and the access log -------------------------------------------------------


def test_request_id_is_kept_when_given(client: httpx.Client) -> None:
    reply = client.get("/api/tags", headers={"X-Request-ID": "client-id-42"})
    assert reply.json()["headers"]["x-request-id"] == "client-id-42"
    assert reply.headers.get_list("x-request-id") == ["client-id-42"]


def test_request_id_is_generated_when_absent(client: httpx.Client) -> None:
    first, second = client.get("/api/tags"), client.get("/api/tags")
    ids = []
    for reply in (first, second):
        [rid] = reply.headers.get_list("x-request-id")
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
        assert reply.json()["headers"]["x-request-id"] == rid
        ids.append(rid)
    assert ids[0] != ids[1]


@pytest.mark.parametrize("bad", ["has space", "x" * 129, 'quote"d', "tab\tbed", "a/b", "x@y"])
def test_an_unusable_request_id_is_replaced(client: httpx.Client, bad: str) -> None:
    reply = client.get("/api/tags", headers={"X-Request-ID": bad})
    [rid] = reply.headers.get_list("x-request-id")
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert reply.json()["headers"]["x-request-id"] == rid


def test_refusals_carry_a_request_id_too(client: httpx.Client) -> None:
    reply = client.get("/metrics", headers={"X-Request-ID": "refused-1"})
    assert reply.headers["x-request-id"] == "refused-1"


def test_access_log_is_json_with_upstream_timing(
    client: httpx.Client, edge: NginxServer, backend: EchoBackend
) -> None:
    client.post("/api/generate", content=b'{"model":"m"}', headers={"X-Request-ID": "log-me-1"})
    entry = edge.wait_for_log(lambda e: e["request_id"] == "log-me-1")
    assert entry["role"] == "edge"
    assert entry["status"] == 200
    assert entry["method"] == "POST"
    assert entry["uri"] == "/api/generate"
    assert entry["upstream_addr"] == backend.address
    assert entry["upstream_status"] == "200"
    for key in ("upstream_connect_time", "upstream_header_time", "upstream_response_time"):
        assert float(entry[key]) >= 0
    assert float(entry["upstream_response_time"]) <= float(entry["request_time"]) + 0.002
    assert entry["request_time"] >= 0
    assert entry["bytes_sent"] > entry["body_bytes_sent"] > 0
    assert entry["tls"] in ("TLSv1.2", "TLSv1.3")
    assert entry["rate_limit"] == "PASSED"
    # Every line of the log is JSON (access_log() parses each one).
    assert len(edge.access_log()) >= 1


def test_a_hostile_user_agent_cannot_break_the_log_line(
    client: httpx.Client, edge: NginxServer
) -> None:
    agent = 'evil", "status": 999, "x": "\\'
    client.get("/api/tags", headers={"User-Agent": agent, "X-Request-ID": "log-me-2"})
    entry = edge.wait_for_log(lambda e: e["request_id"] == "log-me-2")
    assert entry["user_agent"] == agent
    assert entry["status"] == 200


# ---- body cap ------------------------------------------------------------------------------


def test_a_body_over_the_cap_gets_413_json(client: httpx.Client) -> None:
    reply = client.post("/api/chat", content=b"x" * (BODY_CAP_MB * 1024 * 1024 + 1))
    message = assert_json_error(reply, 413)
    assert f"{BODY_CAP_MB} MiB" in message


def test_a_chunked_body_over_the_cap_gets_413_too(client: httpx.Client) -> None:
    chunk = b"x" * (64 * 1024)

    def body() -> Iterator[bytes]:
        for _ in range(BODY_CAP_MB * 16 + 1):
            yield chunk

    reply = client.post("/api/chat", content=body())
    assert_json_error(reply, 413)


def test_a_body_at_the_cap_passes_whole(client: httpx.Client) -> None:
    """Larger than the in-memory buffer: it goes through a temp file in runtime_dir."""
    size = BODY_CAP_MB * 1024 * 1024
    reply = client.post("/api/chat", content=b"y" * size)
    assert reply.status_code == 200
    assert reply.json()["body_bytes"] == size


# ---- streaming and the gateway pool ----------------------------------------------------------


def test_a_stream_reaches_the_client_chunk_by_chunk(client: httpx.Client) -> None:
    count, delay = 6, 0.25
    arrivals: list[float] = []
    start = time.monotonic()
    with client.stream("GET", f"/api/stream?n={count}&delay={delay}") as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if line:
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == count
    # Buffered, every line would arrive together at the end; unbuffered, the first
    # arrives (count - 1) * delay before the last.
    assert arrivals[-1] - arrivals[0] >= 0.7 * (count - 1) * delay
    assert arrivals[0] < arrivals[-1] / 2


def test_a_dead_gateway_gives_502_json(nginx_factory: NginxFactory) -> None:
    dead = f"127.0.0.1:{free_port()}"
    server = nginx_factory(small_stack(edge=GENEROUS_LIMITS), [dead], ["127.0.0.1:9"])
    with server.client() as http:
        reply = http.post("/api/generate", content=b"{}", headers={"X-Request-ID": "dead-1"})
    assert_json_error(reply, 502)
    assert reply.headers["x-request-id"] == "dead-1"


def test_a_stopped_gateway_replica_is_skipped_without_failing_a_request(
    nginx_factory: NginxFactory, echo_backend_factory: EchoFactory
) -> None:
    alive, doomed = echo_backend_factory(), echo_backend_factory()
    server = nginx_factory(
        small_stack(edge=GENEROUS_LIMITS), [alive.address, doomed.address], ["127.0.0.1:9"]
    )
    with server.client() as http:
        before = {http.get("/api/tags").json()["port"] for _ in range(6)}
        assert before == {alive.port, doomed.port}
        doomed.stop()
        # POSTs: retried on the other replica because the dead one never got them.
        replies = [http.post("/api/generate", content=b'{"model":"m"}') for _ in range(20)]
    assert [r.status_code for r in replies] == [200] * 20
    assert {r.json()["port"] for r in replies} == {alive.port}


# ---- rate limit ------------------------------------------------------------------------------


RATE, BURST = 10, 20


@pytest.fixture
def limited_edge(nginx_factory: NginxFactory, echo_backend_factory: EchoFactory) -> NginxServer:
    backend = echo_backend_factory()
    config = small_stack(edge={"rateLimitPerSecond": RATE, "rateLimitBurst": BURST})
    return nginx_factory(config, [backend.address], ["127.0.0.1:9"])


def _count_ok(
    http: httpx.Client, requests: int, pause: float = 0.0
) -> tuple[int, float, list[httpx.Response]]:
    ok, refused = 0, list[httpx.Response]()
    start = time.monotonic()
    for _ in range(requests):
        reply = http.get("/api/tags")
        if reply.status_code == 200:
            ok += 1
        else:
            refused.append(reply)
        if pause:
            time.sleep(pause)
    return ok, time.monotonic() - start, refused


def test_rate_limit_lets_the_burst_through_then_answers_429_json(
    limited_edge: NginxServer,
) -> None:
    with limited_edge.client() as http:
        ok, elapsed, refused = _count_ok(http, 2 * BURST)
    # A fresh bucket takes the burst (and the request that opens it) at once; while
    # the loop runs the bucket drains at RATE, which may admit a few more.
    assert BURST <= ok <= BURST + 2 + RATE * elapsed, (ok, elapsed)
    assert refused
    for reply in refused:
        assert_json_error(reply, 429)
        assert reply.headers["retry-after"] == "1"
        assert reply.headers["x-content-type-options"] == "nosniff"


def test_rate_limit_admits_the_configured_rate_once_the_burst_is_spent(
    limited_edge: NginxServer,
) -> None:
    with limited_edge.client() as http:
        _count_ok(http, 2 * BURST)  # spend the burst
        # Then ask 5x faster than the rate for about two seconds.
        ok, elapsed, refused = _count_ok(http, int(2.0 * RATE * 5), pause=1 / (RATE * 5))
    expected = RATE * elapsed
    assert expected - 3 <= ok <= expected + 3, (ok, elapsed)
    assert {r.status_code for r in refused} == {429}


def test_rate_limit_is_per_client_address(limited_edge: NginxServer, tls_files: TlsFiles) -> None:
    with limited_edge.client() as http:
        _count_ok(http, 2 * BURST)
        assert http.get("/api/tags").status_code == 429
    # 127.0.0.2 is another client on the same loopback.
    trust = ssl.create_default_context(cafile=str(tls_files.ca_file))
    other = httpx.HTTPTransport(local_address="127.0.0.2", verify=trust)
    with httpx.Client(base_url=limited_edge.https_url, transport=other, timeout=10) as http:
        reply = http.get("/api/tags")
    assert reply.status_code == 200
    assert reply.json()["headers"]["x-forwarded-for"] == "127.0.0.2"


def test_the_edge_keeps_exactly_the_ids_the_gateway_keeps(client: httpx.Client) -> None:
    """Both ends agree on what a usable id is, or one hop would log a different one."""
    from llm_gateway.observe import request_id_from

    for candidate in ("a.b_c:d-e", "a/b", "x@y", "x" * 128, "x" * 129, "ünïcode"):
        reply = client.get("/api/tags", headers={"X-Request-ID": candidate.encode()})
        kept = reply.headers["x-request-id"] == candidate
        assert kept == (request_id_from(candidate) == candidate), candidate
