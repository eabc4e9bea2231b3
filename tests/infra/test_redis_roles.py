"""The two Redis servers, live: the rendered redis.conf of each on a real redis-server.

The state server (limits, quota debts, usage, routing state) must refuse writes when
full and never drop what it holds; the cache server must evict within its own size.
Each server is filled past its maxmemory (16 MB, the smallest the config allows) with
1 MiB values, a bounded loop.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from llm_config import parse_stack_config
from llm_config.model import StackConfig
from llm_stack.redis_conf import RedisRole, render_redis_conf

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

# Every test here starts redis-server (see tests/support/tiers.py).
pytestmark = pytest.mark.process

PASSWORD = "state-and-cache-test-password"
MAXMEMORY_MB = 16
VALUE = b"v" * (1024 * 1024)
# Twice the memory: enough to fill either server whatever its overhead.
WRITES = 2 * MAXMEMORY_MB

StartRedis = Callable[[RedisRole], redis.Redis]


def tiny_stack() -> StackConfig:
    return parse_stack_config(
        {
            "environment": "test",
            "ollama": {"models": ["llama3.2:1b"]},
            "redis": {
                "maxmemoryMb": MAXMEMORY_MB,
                "appendonly": False,
                "state": {"maxmemoryMb": MAXMEMORY_MB},
            },
        },
        "test",
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StartRedis]:
    started: list[ManagedProcess] = []
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed"

    def start(role: RedisRole) -> redis.Redis:
        port = free_port()
        data = tmp_path / role
        data.mkdir()
        conf = tmp_path / f"{role}.conf"
        text = render_redis_conf(
            tiny_stack(), PASSWORD, role=role, port=port, bind="127.0.0.1", data_dir=str(data)
        )
        conf.write_text(text)
        process = ManagedProcess([binary, str(conf)], port, tmp_path / f"{role}.log").start()
        started.append(process)
        return redis.Redis(port=port, password=PASSWORD, socket_timeout=10)

    yield start
    for process in started:
        process.stop()


def fill(client: redis.Redis) -> tuple[int, list[redis.exceptions.ResponseError]]:
    """Writes 1 MiB values past maxmemory: how many succeeded, and the errors."""
    written, errors = 0, []
    for index in range(WRITES):
        try:
            client.set(f"fill:{index}", VALUE)
            written += 1
        except redis.exceptions.ResponseError as exc:
            errors.append(exc)
    return written, errors


def test_a_full_state_redis_refuses_writes_and_keeps_every_key(server: StartRedis) -> None:
    client = server("state")
    client.set("llm:tpm:tiny", "debt")
    written, errors = fill(client)
    assert 0 < written < WRITES
    assert errors
    # Redis's OOM error ("command not allowed when used memory > 'maxmemory'").
    assert all(isinstance(e, redis.exceptions.OutOfMemoryError) for e in errors)
    # Nothing it held was dropped: the debt and every accepted write are still there.
    assert client.get("llm:tpm:tiny") == b"debt"
    assert client.dbsize() == written + 1
    assert client.info("stats")["evicted_keys"] == 0
    # Reads and deletes still work: the gateway can pay debts and expire keys.
    assert client.delete("fill:0") == 1
    client.set("llm:tpm:tiny", "debt-2")
    assert client.get("llm:tpm:tiny") == b"debt-2"


def test_a_full_cache_redis_evicts_and_never_refuses(server: StartRedis) -> None:
    client = server("cache")
    written, errors = fill(client)
    assert errors == []
    assert written == WRITES
    assert client.info("stats")["evicted_keys"] > 0
    assert client.dbsize() < WRITES


def test_filling_the_cache_cannot_touch_the_state(server: StartRedis) -> None:
    """The finding this design answers: a huge cached answer evicted quota debts."""
    state, cache = server("state"), server("cache")
    state.set("llm:tpm:tiny", "debt")
    state.hset("llm:usage:20261207:dev", "llama3.2:1b:requests", 17)
    fill(cache)
    assert cache.info("stats")["evicted_keys"] > 0
    assert state.get("llm:tpm:tiny") == b"debt"
    assert state.hget("llm:usage:20261207:dev", "llama3.2:1b:requests") == b"17"
