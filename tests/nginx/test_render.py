"""What the rendered nginx.conf says, read as text. The live tests prove it works."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from llm_nginx import (
    CONTAINER_CERT_PATH,
    CONTAINER_KEY_PATH,
    NginxTopology,
    container_topology,
    loopback_topology,
    render_nginx_conf,
)
from llm_nginx.render import error_body

from tests.nginx.stacks import small_stack, stack_file


def _loopback(tmp: Path, gateways: int = 1, ollamas: int = 1) -> NginxTopology:
    return loopback_topology(
        tmp,
        [f"127.0.0.1:{9000 + i}" for i in range(gateways)],
        [f"127.0.0.1:{9100 + i}" for i in range(ollamas)],
        https_port=40443,
        http_port=40080,
        balancer_port=40880,
        status_port=40881,
        cert_path=tmp / "edge.crt",
        key_path=tmp / "edge.key",
    )


def _server_block(text: str, listen: str) -> str:
    """The `server { ... }` block that listens on `listen` (braces balanced)."""
    start = text.index(f"listen {listen}")
    start = text.rindex("server {", 0, start)
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start : index + 1]
    raise AssertionError("unbalanced braces")


def _upstream_block(text: str, name: str) -> str:
    start = text.index(f"upstream {name} {{")
    return text[start : text.index("}", start) + 1]


def test_edge_tls_is_1_2_and_1_3_with_forward_secret_aead_ciphers(tmp_path: Path) -> None:
    text = render_nginx_conf(stack_file("dev"), _loopback(tmp_path))
    edge = _server_block(text, "127.0.0.1:40443 ssl")
    assert re.search(r"^\s*ssl_protocols TLSv1\.2 TLSv1\.3;$", edge, re.M)
    ciphers = re.search(r"ssl_ciphers ([^;]+);", edge)
    assert ciphers is not None
    for suite in ciphers.group(1).split(":"):
        assert suite.startswith("ECDHE-"), suite
        assert "GCM" in suite or "CHACHA20" in suite, suite
    assert f"ssl_certificate {tmp_path / 'edge.crt'};" in edge
    assert f"ssl_certificate_key {tmp_path / 'edge.key'};" in edge
    assert "server_tokens off;" in text
    # dev turns HSTS off (a laptop's localhost); prod keeps the one-year default.
    assert "Strict-Transport-Security" not in edge
    prod = render_nginx_conf(stack_file("prod"), _loopback(tmp_path))
    assert 'Strict-Transport-Security "max-age=31536000" always' in prod


def test_hsts_left_out_when_its_max_age_is_zero(tmp_path: Path) -> None:
    text = render_nginx_conf(small_stack(edge={"hstsMaxAgeSeconds": 0}), _loopback(tmp_path))
    assert "Strict-Transport-Security" not in text
    assert "X-Content-Type-Options nosniff" in text


def test_rate_limit_burst_and_body_cap_come_from_the_config(tmp_path: Path) -> None:
    config = small_stack(edge={"rateLimitPerSecond": 7, "rateLimitBurst": 13, "maxBodyMb": 3})
    text = render_nginx_conf(config, _loopback(tmp_path))
    assert "limit_req_zone $binary_remote_addr zone=llm_edge_clients:10m rate=7r/s;" in text
    assert "limit_req_status 429;" in text
    edge = _server_block(text, "127.0.0.1:40443 ssl")
    # One per proxied location: /api/, /v1/, /admin/, / and /health.
    assert edge.count("limit_req zone=llm_edge_clients burst=13 nodelay;") == 5
    assert f"client_max_body_size {3 * 1024 * 1024};" in edge
    assert '"error":"request body too large (the limit is 3 MiB)"' in edge
    # The balancer never sees the client: no rate limit there.
    assert "limit_req " not in _server_block(text, "127.0.0.1:40880")


def test_edge_read_timeout_and_balancer_settings_come_from_the_config(tmp_path: Path) -> None:
    config = small_stack(
        edge={"readTimeoutSeconds": 450},
        balancer={
            "maxFails": 3,
            "failTimeoutSeconds": 20,
            "keepaliveConnections": 48,
            "readTimeoutSeconds": 1800,
            "connectTimeoutSeconds": 4,
        },
    )
    text = render_nginx_conf(config, _loopback(tmp_path, gateways=2, ollamas=3))
    edge = _server_block(text, "127.0.0.1:40443 ssl")
    assert "proxy_read_timeout 450s;" in edge
    assert "proxy_buffering off;" in edge
    assert "proxy_http_version 1.1;" in edge
    assert 'proxy_set_header Connection "";' in edge
    ollama = _upstream_block(text, "llm_ollama")
    assert re.search(r"^\s*least_conn;$", ollama, re.M)
    assert "keepalive 48;" in ollama
    servers = re.findall(r"server (\S+) max_fails=3 fail_timeout=20s;", ollama)
    assert servers == ["127.0.0.1:9100", "127.0.0.1:9101", "127.0.0.1:9102"]
    balancer = _server_block(text, "127.0.0.1:40880")
    assert "proxy_read_timeout 1800s;" in balancer
    assert "proxy_connect_timeout 4s;" in balancer
    assert "proxy_buffering off;" in balancer
    assert "proxy_set_header Host localhost;" in balancer
    assert "proxy_next_upstream_tries 3;" in balancer
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in balancer
    gateways = _upstream_block(text, "llm_gateways")
    assert re.search(r"^\s*least_conn;$", gateways, re.M)
    assert len(re.findall(r"server 127\.0\.0\.1:900\d ", gateways)) == 2


def test_state_changing_ollama_calls_are_never_retried_on_another_instance(
    tmp_path: Path,
) -> None:
    balancer = _server_block(
        render_nginx_conf(small_stack(), _loopback(tmp_path, ollamas=2)), "127.0.0.1:40880"
    )
    mutating = balancer[balancer.index("location ~ ^/api/(?:pull") :]
    mutating = mutating[: mutating.index("}")]
    assert "proxy_next_upstream error timeout http_502 http_503;" in mutating
    assert "non_idempotent" not in mutating


def test_internal_listeners_allow_only_the_internal_network() -> None:
    config = stack_file("prod")
    topology = container_topology(config, ["llm-prod-gateway-0:8000"], ["llm-prod-ollama-0:11434"])
    text = render_nginx_conf(config, topology)
    for listen in (str(config.balancer.port), str(config.balancer.status_port)):
        block = _server_block(text, f"{listen};")
        rules = re.findall(r"^\s*(allow|deny) ([^;]+);", block, re.M)
        assert rules[:3] == [
            ("allow", config.network.internal_subnet),
            ("allow", "127.0.0.1"),
            ("deny", "all"),
        ]
    edge_rules = re.findall(r"^\s*(allow|deny) ([^;]+);", _server_block(text, "443 ssl"), re.M)
    assert set(edge_rules) <= {("allow", "all")}


def test_container_topology_uses_the_published_port_in_redirects_and_docker_dns() -> None:
    dev, prod = stack_file("dev"), stack_file("prod")
    dev_text = render_nginx_conf(dev, container_topology(dev, ["g:8000"], ["o:11434"]))
    # The configured hostname, never the client's Host header.
    assert f"return 301 https://{dev.edge.hostname}:8443$request_uri;" in dev_text
    assert "$host:" not in dev_text
    prod_text = render_nginx_conf(prod, container_topology(prod, ["g:8000"], ["o:11434"]))
    # 443 is the https default: the redirect leaves the port out.
    assert f"return 301 https://{prod.edge.hostname}$request_uri;" in prod_text
    assert "resolver 127.0.0.11 valid=10s ipv6=off;" in prod_text
    assert "server o:11434 max_fails=2 fail_timeout=15s resolve;" in prod_text
    assert "server g:8000 max_fails=0 fail_timeout=5s resolve;" in prod_text
    assert f"ssl_certificate {CONTAINER_CERT_PATH};" in prod_text
    assert f"ssl_certificate_key {CONTAINER_KEY_PATH};" in prod_text
    assert "user nginx;" in prod_text
    assert "listen 443 ssl;" in prod_text
    assert "listen 80;" in prod_text
    assert "access_log /dev/stdout llm_edge;" in prod_text


def test_loopback_topology_needs_no_resolver(tmp_path: Path) -> None:
    text = render_nginx_conf(stack_file("dev"), _loopback(tmp_path))
    assert "resolver" not in text
    assert " resolve;" not in text
    assert f"pid {tmp_path}/nginx.pid;" in text
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{temp}_temp_path {tmp_path}/{temp};" in text


def test_ops_paths_are_refused_at_the_edge(tmp_path: Path) -> None:
    edge = _server_block(
        render_nginx_conf(small_stack(), _loopback(tmp_path)), "127.0.0.1:40443 ssl"
    )
    for location in ("location = /metrics {", "location = /ready {", "location ^~ /_ {"):
        block = edge[edge.index(location) :]
        block = block[: block.index("}")]
        assert "return 404 " in block
        assert "proxy_pass" not in block
    proxied = re.findall(r"location (= )?(\S+) \{\n(?:[^}]*?)proxy_pass http://llm_gateways;", edge)
    assert sorted(path for _, path in proxied) == ["/", "/admin/", "/api/", "/health", "/v1/"]


def test_every_error_nginx_writes_is_ollama_shaped_json(tmp_path: Path) -> None:
    text = render_nginx_conf(small_stack(), _loopback(tmp_path))
    bodies = re.findall(r"return (\d{3}) '([^']*)';", text)
    assert {code for code, _ in bodies} >= {"403", "404", "413", "429", "502", "503", "504"}
    for _, body in bodies:
        decoded = json.loads(body)
        assert list(decoded) == ["error"]
        assert isinstance(decoded["error"], str)
        assert decoded["error"]
    assert "default_type application/json;" in text


def test_error_body_refuses_text_that_would_break_the_config() -> None:
    assert error_body("fine") == '{"error":"fine"}'
    with pytest.raises(ValueError, match="cannot be embedded"):
        error_body("it's")


def test_render_is_deterministic(tmp_path: Path) -> None:
    config = stack_file("prod")
    assert render_nginx_conf(config, _loopback(tmp_path, 2, 2)) == render_nginx_conf(
        config, _loopback(tmp_path, 2, 2)
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gateways": []}, "gateways: at least one"),
        ({"ollamas": ["127.0.0.1:1; evil"]}, "is not host:port"),
        ({"ollamas": ["127.0.0.1:99999"]}, "is not host:port"),
        ({"ollamas": ["a:1", "a:1"]}, "duplicate"),
        ({"balancer_listen": "8080 default_server"}, "balancer_listen"),
        ({"status_listen": "127.0.0.1:40880"}, "listen values must differ"),
        ({"internal_allow": ["everyone"]}, "internal_allow"),
        ({"internal_allow": []}, "internal_allow"),
        ({"cert_path": "relative.crt"}, "cert_path"),
        ({"runtime_dir": "/tmp/x; user root"}, "runtime_dir"),
        ({"access_log": "/tmp/$host.log"}, "access_log"),
        ({"resolver": "dns.example"}, "resolver"),
        ({"user": "root; worker_processes 1"}, "user"),
        ({"https_public_port": 0}, "https_public_port"),
    ],
)
def test_topology_rejects_values_that_would_change_the_config(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        replace(_loopback(tmp_path), **change)  # type: ignore[arg-type]


def test_topology_accepts_ipv6_and_names(tmp_path: Path) -> None:
    topology = replace(
        _loopback(tmp_path),
        gateways=["[::1]:8000", "llm-dev-gateway-0:8000"],
        internal_allow=["172.28.0.0/24", "::1"],
    )
    assert topology.gateways == ("[::1]:8000", "llm-dev-gateway-0:8000")
