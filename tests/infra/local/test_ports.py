"""Ports: free ones on loopback, and configured ones checked before anything starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from llm_stack.local.errors import LocalStackError
from llm_stack.local.ports import assign_ports, check_edge_ports, free_ports, port_available
from llm_stack.local.source import load_source

from tests.infra.local.conftest import E2E_STACK_FILE


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(port_available(p) for p in ports)


def test_a_listening_port_is_not_available() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert not port_available(server.getsockname()[1])


def test_a_taken_edge_port_names_the_config_key(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        path = tmp_path / "Pulumi.t.yaml"
        path.write_text(
            "config:\n  llm-stack:ollama:\n    models: [m]\n"
            f"  llm-stack:edge:\n    httpsPort: {free_ports(1)[0]}\n    httpPort: {port}\n"
        )
        config = load_source(path).config
        with pytest.raises(LocalStackError) as raised:
            check_edge_ports(config, path)
    assert f"port {port} on 127.0.0.1 (llm-stack:edge.httpPort in {path})" in str(raised.value)
    assert "--free-ports" in raised.value.fix


def test_assignment_keeps_configured_edge_ports_unless_asked() -> None:
    config = load_source(E2E_STACK_FILE).config
    fixed = assign_ports(config, use_free_edge_ports=False, emulators=2)
    assert (fixed.https, fixed.http) == (config.edge.https_port, config.edge.http_port)
    assert len(fixed.gateways) == 2
    assert len(fixed.emulators) == 2
    assert len(set(fixed.all())) == len(fixed.all())
    free = assign_ports(config, use_free_edge_ports=True, emulators=0)
    assert free.https != config.edge.https_port
    assert free.emulators == ()
