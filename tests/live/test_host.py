"""Checks that hold for every live stack: a Docker host after `pulumi up`, or the local
stack. Run them against the host the stack runs on (`--hosts`, see tests/live/README.md)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.live.hostview import LiveStack, poll

pytestmark = pytest.mark.live


def test_the_edge_listens_where_the_outputs_say(stack: LiveStack) -> None:
    assert {"https", "http"} <= {p["name"] for p in stack.outputs["edgePorts"]}
    for address, port in stack.edge_listeners():
        assert stack.host.socket(f"tcp://{address}:{port}").is_listening, (address, port)


def test_ollama_redis_and_internal_services_never_listen_on_a_public_interface(
    stack: LiveStack,
) -> None:
    public = []
    for role, ports in stack.private_ports().items():
        for port in ports:
            for wildcard in ("0.0.0.0", "::"):
                if stack.host.socket(f"tcp://{wildcard}:{port}").is_listening:
                    public.append((role, wildcard, port))
    assert public == []
    if not stack.docker:
        # Locally they do run, on loopback: the check above is not vacuous.
        for role in ("redis", "ollama", "gateway", "prometheus"):
            for service in stack.services(role):
                assert stack.host.socket(f"tcp://127.0.0.1:{service['port']}").is_listening


def test_every_gateway_replica_answers_health(stack: LiveStack) -> None:
    bodies = stack.gateway_health()
    assert len(bodies) == stack.gateway_count() >= 1
    for name, body in bodies.items():
        assert json.loads(body) == {"status": "ok"}, name


def test_an_identical_request_through_the_edge_is_a_cache_hit(stack: LiveStack) -> None:
    body = {
        "model": stack.outputs["models"][0],
        "prompt": f"live check {uuid.uuid4().hex}",
        "stream": False,
        "options": {"temperature": 0},
    }
    first = stack.edge_request("/api/generate", body)
    assert first.status == 200, first.body[:500]
    assert first.headers["x-cache"] == "MISS"
    assert "x-request-id" in first.headers
    second = stack.edge_request("/api/generate", body)
    assert second.status == 200
    assert second.headers["x-cache"] == "HIT"
    assert second.body == first.body
    assert json.loads(second.body)["done"] is True


def test_prometheus_has_every_gateway_the_nginx_exporter_and_itself_up(stack: LiveStack) -> None:
    expected = {
        "llm-gateway": ["up"] * stack.gateway_count(),
        "nginx": ["up"],
        "prometheus": ["up"],
    }

    def all_up() -> dict[str, list[str]] | None:
        by_job: dict[str, list[str]] = {}
        for target in stack.prometheus_api("targets")["activeTargets"]:
            by_job.setdefault(target["labels"]["job"], []).append(target["health"])
        return by_job if all(by_job.get(job) == up for job, up in expected.items()) else None

    poll(all_up, 60, f"Prometheus reports {expected}")
