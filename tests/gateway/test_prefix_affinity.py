"""Prefix affinity end to end: a real gateway (model-aware) in front of three emulators.

A conversation's turns go where its history was sent (llama-server keeps it in that
slot's cache); with `GATEWAY_PREFIX_AFFINITY=false` load alone decides. What the
router estimated is in /admin/queue and its metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.test_quotas import Keys
from tests.support.emulator import EmulatorFactory
from tests.support.gateway import GatewayFactory, metric_value
from tests.support.redis_server import RedisServer

MODEL = "llama3.2:1b"
SYSTEM = "You answer questions about caches. " * 40


def _served(url: str) -> int:
    view = httpx.get(f"{url}/_emulator/scheduler", timeout=5).json()
    return sum(view["counters"]["served"].values())


def _turns(conversation: str, count: int) -> list[list[dict[str, str]]]:
    """The message lists of `count` turns: each the whole history so far."""
    history: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
    turns = []
    for number in range(count):
        history = [*history, {"role": "user", "content": f"{conversation} question {number} " * 30}]
        turns.append(history)
        history = [*history, {"role": "assistant", "content": f"answer {number} " * 40}]
    return turns


def _run(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    emulator_factory: EmulatorFactory,
    redis_server: RedisServer,
    affinity: bool,
) -> tuple[list[int], dict[str, Any], str]:
    emulators = [emulator_factory(tokens=4) for _ in range(3)]
    keys = Keys(tmp_path, alice="    tokensPerMinute: 10000000\n", ops="    admin: true\n")
    gateway = gateway_factory(
        GATEWAY_ROUTING="model-aware",
        GATEWAY_OLLAMA_INSTANCES=",".join(e.url for e in emulators),
        GATEWAY_UPSTREAM_URL=emulators[0].url,
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_AUTH_DISABLED="false",
        GATEWAY_API_KEYS_FILE=str(keys.file),
        GATEWAY_CACHE_MODE="off",
        GATEWAY_NUM_PARALLEL="2",
        GATEWAY_POLL_SECONDS="0.2",
        GATEWAY_PREFIX_AFFINITY="true" if affinity else "false",
    )
    for emulator in emulators:  # the model loaded everywhere, as in a steady stack
        httpx.post(f"{emulator.url}/api/generate", json={"model": MODEL, "prompt": ""}, timeout=10)
    before = [_served(e.url) for e in emulators]
    with httpx.Client(base_url=gateway.url, headers=keys.auth("alice"), timeout=30) as client:
        # Let the router see the models resident (its /api/ps poll).
        for _ in range(50):
            queue = client.get("/admin/queue", headers=keys.auth("ops")).json()
            if all(i["models"] for i in queue["instances"]):
                break
            time.sleep(0.1)
        for conversation in ("a", "b", "c"):
            for messages in _turns(conversation, 4):
                body = {"model": MODEL, "messages": messages, "stream": False}
                answer = client.post("/api/chat", json=body)
                assert answer.status_code == 200, answer.text
        queue = client.get("/admin/queue", headers=keys.auth("ops")).json()
    served = [_served(e.url) - b for e, b in zip(emulators, before, strict=True)]
    return served, queue, gateway.metrics()


def test_each_conversation_keeps_to_the_instance_holding_its_history(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    emulator_factory: EmulatorFactory,
    redis_server: RedisServer,
) -> None:
    """One turn at a time: every instance could start each turn now, and affinity sends
    each follow-up where its history went (whole conversations, 4 turns each)."""
    served, queue, metrics = _run(
        tmp_path, gateway_factory, emulator_factory, redis_server, affinity=True
    )
    assert sum(served) == 12
    assert all(count % 4 == 0 for count in served), served
    assert queue["prefix_affinity"] is True
    assert queue["burst"] == 12  # the fair queue's default credit, shown beside it
    hits = sum(i["affinity"]["hits"] for i in queue["instances"])
    assert hits >= 9  # every follow-up (3 x 3), and first turns sharing the system prompt
    assert metric_value(metrics, "llm_affinity_hits_total") == hits
    assert metric_value(metrics, "llm_prompt_tokens_estimated_total", part="cached") > 0


def test_without_affinity_turns_spread_by_load(
    tmp_path: Path,
    gateway_factory: GatewayFactory,
    emulator_factory: EmulatorFactory,
    redis_server: RedisServer,
) -> None:
    served, queue, metrics = _run(
        tmp_path, gateway_factory, emulator_factory, redis_server, affinity=False
    )
    assert sum(served) == 12
    assert queue["prefix_affinity"] is False
    assert "affinity" not in queue["instances"][0]
    assert metric_value(metrics, "llm_affinity_hits_total") == 0
