"""Draining through the admin API of a running gateway (model-aware, two emulated Ollama
instances): who may, what a drain does to new requests, what every replica sees."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.gateway.test_quotas import Keys, start
from tests.support.emulator import Emulator, EmulatorFactory
from tests.support.gateway import GatewayFactory, GatewayProcess, metric_value
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

Pair = tuple[Keys, GatewayProcess, Emulator, Emulator]


def model_aware(first: Emulator, second: Emulator) -> dict[str, str]:
    return {
        "GATEWAY_ROUTING": "model-aware",
        # The first named explicitly, the second by its host:port.
        "GATEWAY_OLLAMA_INSTANCES": f"gpu-1={first.url},{second.url}",
        "GATEWAY_POLL_SECONDS": "0.2",
        "GATEWAY_NUM_PARALLEL": "4",
    }


@pytest.fixture
def pair(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    emulator_factory: EmulatorFactory,
    redis_server: RedisServer,
) -> Pair:
    keys = Keys(tmp_path, alpha="", ops="    admin: true\n")
    second = emulator_factory()
    gateway = start(gateway_factory, emulator, redis_server, keys, **model_aware(emulator, second))
    return keys, gateway, emulator, second


def instances(gateway: GatewayProcess, keys: Keys) -> dict[str, dict[str, object]]:
    answer = httpx.get(f"{gateway.url}/admin/instances", headers=keys.auth("ops"), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["routing"] == "model-aware"
    return {entry["name"]: entry for entry in answer.json()["instances"]}


def generate(gateway: GatewayProcess, keys: Keys, prompt: str) -> None:
    answer = httpx.post(
        f"{gateway.url}/api/generate", headers=keys.auth("alpha"), timeout=30,
        json={"model": "llama3.2", "prompt": prompt, "stream": False},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text


def test_only_admin_keys_may_and_mistakes_get_json_errors(pair: Pair) -> None:
    keys, gateway, _, _ = pair
    calls = [
        ("GET", "/admin/instances"),
        ("POST", "/admin/instances/gpu-1/drain"),
        ("POST", "/admin/instances/gpu-1/undrain"),
    ]
    for method, path in calls:
        anonymous = httpx.request(method, f"{gateway.url}{path}", timeout=5)
        assert anonymous.status_code == 401
        denied = httpx.request(
            method, f"{gateway.url}{path}", headers=keys.auth("alpha"), timeout=5
        )
        assert denied.status_code == 403
        assert "admin" in denied.json()["error"]
    unknown = httpx.post(
        f"{gateway.url}/admin/instances/gpu-9/drain", headers=keys.auth("ops"), timeout=5
    )
    assert unknown.status_code == 404
    assert "gpu-9" in unknown.json()["error"]
    bad = httpx.post(
        f"{gateway.url}/admin/instances/gpu-1/drain", params={"until": "later"},
        headers=keys.auth("ops"), timeout=5,
    )  # fmt: skip
    assert bad.status_code == 400
    assert "until" in bad.json()["error"]
    assert instances(gateway, keys)["gpu-1"]["state"] == "healthy"  # nothing was drained


def test_a_drained_instance_gets_no_new_request_until_undrained(pair: Pair) -> None:
    keys, gateway, first, second = pair
    listed = instances(gateway, keys)
    second_name = second.url.removeprefix("http://")
    assert sorted(listed) == sorted(["gpu-1", second_name])
    assert listed["gpu-1"]["url"] == first.url
    assert {entry["state"] for entry in listed.values()} == {"healthy"}

    answer = httpx.post(
        f"{gateway.url}/admin/instances/gpu-1/drain", headers=keys.auth("ops"), timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["shared"] is True
    drained = answer.json()["instance"]
    assert (drained["state"], drained["in_flight"]) == ("drained", 0)
    assert drained["drain"]["until"] == "undrain"
    assert metric_value(gateway.metrics(), "llm_instance_drain_state", ollama_instance="gpu-1") == 2

    before = first.count("POST /api/generate"), second.count("POST /api/generate")
    for n in range(4):
        generate(gateway, keys, f"while gpu-1 is drained {n}")
    after = first.count("POST /api/generate"), second.count("POST /api/generate")
    assert (after[0] - before[0], after[1] - before[1]) == (0, 4)

    answer = httpx.post(
        f"{gateway.url}/admin/instances/gpu-1/undrain", headers=keys.auth("ops"), timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["instance"]["state"] == "healthy"
    assert instances(gateway, keys)["gpu-1"]["drain"] is None
    assert metric_value(gateway.metrics(), "llm_instance_drain_state", ollama_instance="gpu-1") == 0


def test_a_drain_made_through_one_replica_shows_on_the_other(
    pair: Pair, gateway_factory: GatewayFactory
) -> None:
    keys, one, _, _ = pair
    other = gateway_factory(**{k: v for k, v in one.env.items() if k != "GATEWAY_PORT"})
    answer = httpx.post(
        f"{one.url}/admin/instances/gpu-1/drain", params={"until": "ready"},
        headers=keys.auth("ops"), timeout=10,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    seen = instances(other, keys)["gpu-1"]  # read from Redis at its start, or announced
    assert seen["state"] == "drained"
    assert seen["drain"]["until"] == "ready"  # type: ignore[index]


def test_with_upstream_routing_draining_is_refused_with_a_reason(
    tmp_path: Path, gateway_factory: GatewayFactory, emulator: Emulator, redis_server: RedisServer
) -> None:
    keys = Keys(tmp_path, ops="    admin: true\n")
    gateway = start(gateway_factory, emulator, redis_server, keys, GATEWAY_ROUTING="upstream")
    for method, path in [
        ("GET", "/admin/instances"),
        ("POST", "/admin/instances/x/drain"),
        ("POST", "/admin/instances/x/undrain"),
    ]:
        answer = httpx.request(method, f"{gateway.url}{path}", headers=keys.auth("ops"), timeout=5)
        assert answer.status_code == 409
        assert "model-aware routing" in answer.json()["error"]


# -- the CLI, against this gateway -------------------------------------------------------


def cli(gateway: GatewayProcess, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llm_gateway", "drain", *args],
        env={"LLM_GATEWAY_URL": gateway.url, "LLM_GATEWAY_ADMIN_KEY": key, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_cli_drains_waits_for_what_runs_there_and_undrains(pair: Pair) -> None:
    keys, gateway, first, second = pair
    for emulator in (first, second):
        emulator.configure(tokens=60, token_delay=0.05)  # about 3 s per answer
    admin = keys.plain["ops"]
    streamed: list[str] = []

    def long_request() -> None:
        with httpx.stream(
            "POST", f"{gateway.url}/api/generate", headers=keys.auth("alpha"), timeout=60,
            json={"model": "llama3.2", "prompt": "a long one", "stream": True},
        ) as response:  # fmt: skip
            streamed.extend(response.iter_lines())

    thread = threading.Thread(target=long_request)
    thread.start()
    try:
        deadline = time.monotonic() + 30  # a bound on a busy machine, not a measure
        busy: list[str] = []
        while not busy and time.monotonic() < deadline:
            listed = instances(gateway, keys)
            busy = [name for name, entry in listed.items() if entry["in_flight"]]
            time.sleep(0.05)
        assert len(busy) == 1
        (name,) = busy

        timed_out = cli(gateway, admin, "--instance", name, "--wait", "--timeout", "0.2")
        assert timed_out.returncode == 3, timed_out.stderr
        assert f"{name}: draining (1 in flight)" in timed_out.stdout
        assert "in flight after 0.2s" in timed_out.stderr

        waited = cli(gateway, admin, "--instance", name, "--wait", "--timeout", "60")
        assert waited.returncode == 0, waited.stderr
        assert waited.stdout.splitlines()[-1] == f"{name}: drained (0 in flight)"
    finally:
        thread.join(60)
    # What ran there finished: the whole answer, through to its last line.
    assert orjson.loads(streamed[-1])["done"] is True

    undrained = cli(gateway, admin, "--instance", name, "--undrain")
    assert undrained.returncode == 0, undrained.stderr
    assert undrained.stdout.strip() == f"{name}: healthy (0 in flight)"


def test_the_cli_says_why_it_cannot(pair: Pair) -> None:
    keys, gateway, _, _ = pair
    refused = cli(gateway, keys.plain["alpha"], "--instance", "gpu-1")
    assert refused.returncode == 1
    assert "403" in refused.stderr
    unknown = cli(gateway, keys.plain["ops"], "--instance", "gpu-9")
    assert unknown.returncode == 1
    assert "404" in unknown.stderr
    nowhere = subprocess.run(
        [sys.executable, "-m", "llm_gateway", "drain", "--instance", "gpu-1",
         "--url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert nowhere.returncode == 1
    assert "cannot reach the gateway" in nowhere.stderr
