"""The internal listeners, live: who may use them and what nginx sends to Ollama.

The Ollama instances here are echo stand-ins (tests/nginx/echo_backend.py), which show
the request as it reached them; the balancing itself is proven against the Ollama
emulator in test_balancer_live.py.
"""

from __future__ import annotations

import ssl

import httpx
import pytest

from tests.nginx.conftest import EchoFactory
from tests.nginx.stacks import small_stack
from tests.support.nginx_server import NginxFactory, NginxServer, TlsFiles
from tests.support.ports import free_port


def _from(address: str, **kwargs: object) -> httpx.Client:
    """A client whose connections come from `address` (another loopback address)."""
    transport = httpx.HTTPTransport(local_address=address, **kwargs)  # type: ignore[arg-type]
    return httpx.Client(transport=transport, timeout=10)


@pytest.fixture
def balancer(nginx_factory: NginxFactory, echo_backend_factory: EchoFactory) -> NginxServer:
    gateway, ollama = echo_backend_factory(), echo_backend_factory()
    return nginx_factory(small_stack(), [gateway.address], [ollama.address])


def test_the_balancer_sends_host_localhost_and_keeps_the_request_id(
    balancer: NginxServer,
) -> None:
    reply = httpx.post(
        f"{balancer.balancer_url}/api/generate",
        content=b'{"model":"m"}',
        headers={"X-Request-ID": "from-gateway-7", "Host": "llm-dev-nginx:8080"},
        timeout=10,
    )
    assert reply.status_code == 200
    seen = reply.json()["headers"]
    # Ollama bound to loopback refuses a Host it does not see as local.
    assert seen["host"] == "localhost"
    assert seen["x-request-id"] == "from-gateway-7"
    assert seen.get("connection", "") == ""
    assert reply.json()["body_bytes"] == len(b'{"model":"m"}')
    entry = balancer.wait_for_log(lambda e: e["request_id"] == "from-gateway-7")
    assert entry["role"] == "balancer"
    assert entry["status"] == 200
    assert float(entry["upstream_header_time"]) >= 0


def test_the_balancer_refuses_addresses_outside_the_internal_network(
    balancer: NginxServer,
) -> None:
    with _from("127.0.0.2") as outsider:
        reply = outsider.get(f"{balancer.balancer_url}/api/tags")
    assert reply.status_code == 403
    assert reply.json() == {"error": "forbidden"}
    assert "x-backend-port" not in reply.headers


def test_stub_status_answers_inside_and_refuses_outside(balancer: NginxServer) -> None:
    inside = httpx.get(balancer.status_url, timeout=10)
    assert inside.status_code == 200
    assert inside.text.startswith("Active connections:")
    assert "server accepts handled requests" in inside.text
    with _from("127.0.0.2") as outsider:
        refused = outsider.get(balancer.status_url)
    assert refused.status_code == 403
    assert refused.json() == {"error": "forbidden"}
    other_path = httpx.get(balancer.status_url.replace("/stub_status", "/"), timeout=10)
    assert other_path.status_code == 404


def test_the_edge_is_open_to_any_address(balancer: NginxServer, tls_files: TlsFiles) -> None:
    """Control for the refusals above: 127.0.0.2 is refused for being outside, not broken."""
    trust = ssl.create_default_context(cafile=str(tls_files.ca_file))
    with _from("127.0.0.2", verify=trust) as outsider:
        reply = outsider.get(f"{balancer.https_url}/api/tags")
    assert reply.status_code == 200


def test_no_instance_left_gives_502_json(nginx_factory: NginxFactory) -> None:
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    server = nginx_factory(small_stack(), ["127.0.0.1:9"], dead)
    reply = httpx.post(f"{server.balancer_url}/api/chat", content=b"{}", timeout=10)
    assert reply.status_code == 502
    assert reply.json() == {"error": "upstream unavailable"}
    entry = server.wait_for_log(lambda e: e["uri"] == "/api/chat")
    # Both instances were tried before giving up.
    assert sorted(entry["upstream_addr"].split(", ")) == sorted(dead)


def test_a_refused_connection_is_retried_for_any_request(
    nginx_factory: NginxFactory, echo_backend_factory: EchoFactory
) -> None:
    """Nothing reached the dead instance, so even a pull may go to the next one."""
    alive, dead = echo_backend_factory(), f"127.0.0.1:{free_port()}"
    server = nginx_factory(small_stack(), ["127.0.0.1:9"], [alive.address, dead])
    for path in ("/api/pull", "/api/generate", "/api/pull", "/api/generate"):
        reply = httpx.post(f"{server.balancer_url}{path}", content=b'{"model":"m"}', timeout=10)
        assert reply.status_code == 200
        assert reply.json()["port"] == alive.port
    tried = [e["upstream_addr"] for e in server.access_log()]
    assert any(dead in addresses for addresses in tried)


def test_a_busy_instance_hands_generations_on_but_not_pulls(
    nginx_factory: NginxFactory, echo_backend_factory: EchoFactory
) -> None:
    """A 503 (Ollama's queue full) means the request reached the instance: only requests
    without side effects are sent again to another one."""
    healthy, busy = echo_backend_factory(), echo_backend_factory(503)
    # max_fails=0: the busy instance stays in the rotation for the whole test.
    config = small_stack(balancer={"maxFails": 0})
    server = nginx_factory(config, ["127.0.0.1:9"], [healthy.address, busy.address])

    def post(path: str) -> httpx.Response:
        return httpx.post(f"{server.balancer_url}{path}", content=b'{"model":"m"}', timeout=10)

    generations = [post("/api/generate") for _ in range(6)]
    assert [r.status_code for r in generations] == [200] * 6
    pulls = [post("/api/pull") for _ in range(6)]
    assert {r.status_code for r in pulls} == {200, 503}
    for reply in pulls:
        if reply.status_code == 503:
            # Ollama's own error body, passed through untouched.
            assert "server busy" in reply.json()["error"]
            assert reply.headers["x-backend-port"] == str(busy.port)
