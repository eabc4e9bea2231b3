"""Checks of a Docker host after `pulumi up`, one test per container of the outputs.

Collected only when the outputs are a Docker host's (see conftest.py): against the
local stack there are no containers, and these tests do not exist rather than skip.
"""

from __future__ import annotations

import pytest

from tests.live.hostview import LiveStack
from tests.live.outputs import Container, containers, uses_gpus

pytestmark = pytest.mark.live

ONE_SHOT_LABEL = "llm-stack.one-shot"
NO_HEALTHCHECK_LABEL = "llm-stack.no-healthcheck"


def _labels(inspected: dict[str, object]) -> dict[str, str]:
    config = inspected["Config"]
    assert isinstance(config, dict)
    return dict(config.get("Labels") or {})


def test_container_is_running_and_healthy(stack: LiveStack, container: Container) -> None:
    inspected = stack.inspect(container.name)
    state = inspected["State"]
    if ONE_SHOT_LABEL in _labels(inspected):
        # The model puller runs once: it must have finished, and finished well.
        assert state["Status"] == "exited", state
        assert state["ExitCode"] == 0, state
        return
    assert state["Running"] is True, state
    assert state["Restarting"] is False, state
    healthcheck = inspected["Config"].get("Healthcheck") or {}
    if NO_HEALTHCHECK_LABEL in _labels(inspected):
        assert not healthcheck.get("Test"), "labelled as having no healthcheck, but has one"
        return
    assert healthcheck.get("Test"), "every long-running container has a healthcheck"
    assert state["Health"]["Status"] == "healthy", state["Health"].get("Log", [])[-1:]


def test_container_restart_policy(stack: LiveStack, container: Container) -> None:
    inspected = stack.inspect(container.name)
    expected = "no" if ONE_SHOT_LABEL in _labels(inspected) else "unless-stopped"
    assert inspected["HostConfig"]["RestartPolicy"]["Name"] == expected


def test_internal_container_publishes_no_port(
    stack: LiveStack, internal_container: Container
) -> None:
    inspected = stack.inspect(internal_container.name)
    assert not inspected["HostConfig"].get("PortBindings")
    published = {
        port: bindings
        for port, bindings in (inspected["NetworkSettings"].get("Ports") or {}).items()
        if bindings
    }
    assert published == {}


def test_edge_publishes_exactly_the_edge_ports(stack: LiveStack, edge_container: Container) -> None:
    bindings = stack.inspect(edge_container.name)["HostConfig"]["PortBindings"] or {}
    published = sorted(
        (b["HostIp"] or "0.0.0.0", int(b["HostPort"]))
        for entries in bindings.values()
        for b in entries or []
    )
    expected = sorted(
        (p["address"], int(p["port"])) for p in stack.outputs["edgePorts"] if p["role"] == "nginx"
    )
    assert published == expected


def test_ollama_container_gpu_request(stack: LiveStack, ollama_container: Container) -> None:
    requests = stack.inspect(ollama_container.name)["HostConfig"].get("DeviceRequests") or []
    if not uses_gpus(stack.outputs):
        assert requests == [], "a CPU-only stack requests no GPU"
        return
    # Exactly one GPU, requested with the gpu capability.
    assert len(requests) == 1, requests
    assert len(requests[0]["DeviceIDs"] or []) == 1, requests
    assert ["gpu"] in requests[0]["Capabilities"], requests


def test_ollama_instances_each_have_their_own_gpu(stack: LiveStack) -> None:
    if not uses_gpus(stack.outputs):
        assert not any(
            stack.inspect(c.name)["HostConfig"].get("DeviceRequests")
            for c in containers(stack.outputs, "ollama")
        )
        return
    devices = [
        tuple(stack.inspect(c.name)["HostConfig"]["DeviceRequests"][0]["DeviceIDs"])
        for c in containers(stack.outputs, "ollama")
    ]
    assert len(set(devices)) == len(devices), devices
