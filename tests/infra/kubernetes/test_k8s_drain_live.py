"""An Ollama pod's drain hook against a real gateway: the sidecar's script with the real
`llm-gateway drain` and a keys file carrying the stack's drain key, the gateway routing
model-aware over two emulated Ollama instances named by host:port, as on a cluster."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import redis
from llm_config.api_keys import keys_file_text
from llm_gateway.contract import digest_of, mint_key
from llm_stack.kubernetes import drain

from tests.support.emulator import Emulator, EmulatorFactory
from tests.support.gateway import GatewayFactory, GatewayProcess
from tests.support.redis_server import RedisServer

# A bound on a busy machine, not a measure.
DEADLINE_SECONDS = 60


def _instances(gateway: GatewayProcess, key: str) -> dict[str, dict[str, object]]:
    answer = httpx.get(
        f"{gateway.url}/admin/instances", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return {entry["name"]: entry for entry in answer.json()["instances"]}


def test_the_drain_hook_drains_through_a_real_gateway(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    emulator: Emulator,
    emulator_factory: EmulatorFactory,
    redis_server: RedisServer,
) -> None:
    client_key, drain_key = mint_key(), mint_key()
    keys = tmp_path / "keys.json"
    keys.write_text(
        drain.with_drain_key(keys_file_text({"team": {"digest": digest_of(client_key)}}), drain_key)
    )
    key_file = tmp_path / "drain-key"
    key_file.write_text(drain_key)
    second = emulator_factory()
    for ollama in (emulator, second):
        ollama.configure(tokens=60, token_delay=0.05)  # about 3 s per answer
    redis.Redis.from_url(redis_server.url).flushdb()
    gateway = gateway_factory(
        GATEWAY_UPSTREAM_URL=emulator.url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS_FILE=str(keys),
        GATEWAY_ROUTING="model-aware",
        GATEWAY_OLLAMA_INSTANCES=f"{emulator.url},{second.url}",
        GATEWAY_POLL_SECONDS="0.2",
        GATEWAY_NUM_PARALLEL="4",
    )
    # The drain key drains; it generates nothing.
    refused = httpx.post(
        f"{gateway.url}/api/generate",
        headers={"Authorization": f"Bearer {drain_key}"},
        json={"model": "llama3.2", "prompt": "hi", "stream": False},
        timeout=30,
    )
    assert refused.status_code == 403, refused.text

    streamed: list[bytes] = []

    def long_request() -> None:
        with httpx.stream(
            "POST",
            f"{gateway.url}/api/generate",
            headers={"Authorization": f"Bearer {client_key}"},
            json={"model": "llama3.2", "prompt": "a long one", "stream": True},
            timeout=DEADLINE_SECONDS,
        ) as response:
            streamed.extend(line.encode() for line in response.iter_lines())

    thread = threading.Thread(target=long_request)
    thread.start()
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        busy: list[str] = []
        while not busy and time.monotonic() < deadline:
            listed = _instances(gateway, drain_key)
            busy = [name for name, entry in listed.items() if entry["in_flight"]]
            time.sleep(0.05)
        (name,) = busy
        # What the pod's sidecar runs in its preStop hook, as the manifest sets it up.
        hook = subprocess.run(
            ["/bin/sh", "-c", drain.DRAIN_SCRIPT],
            env={
                "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                "LLM_DRAIN_INSTANCE": name,
                "LLM_DRAIN_TIMEOUT": str(DEADLINE_SECONDS),
                "LLM_DRAIN_DNS_SECONDS": "0",
                "LLM_DRAIN_MARKER": str(tmp_path / "drained"),
                "LLM_DRAIN_GATEWAY_URL": gateway.url,
                "LLM_DRAIN_KEY_FILE": str(key_file),
                "LLM_DRAIN_LOG": str(tmp_path / "no-log"),
            },
            capture_output=True,
            text=True,
            timeout=2 * DEADLINE_SECONDS,
            check=False,
        )
        assert hook.returncode == 0, hook.stderr
        assert f"drained {name}" in hook.stdout, hook.stdout + hook.stderr
        # Released only now: nothing is in flight there any more.
        assert (tmp_path / "drained").exists()
        assert _instances(gateway, drain_key)[name]["in_flight"] == 0
    finally:
        thread.join(DEADLINE_SECONDS)
    # The stream on the drained instance ran to its end.
    assert orjson.loads(streamed[-1])["done"] is True
    entry = _instances(gateway, drain_key)[name]
    # Until it is seen down and answering again: the replacement pod is re-admitted.
    assert entry["state"] == "drained", entry
    assert entry["drain"]["until"] == "ready", entry  # type: ignore[index]
