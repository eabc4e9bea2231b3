"""Redis as a helper (redis-py underneath) against a real redis-server: scripts by SHA,
the URL forms, and which failures make the gateway skip Redis for a moment."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.redis_guard import UNAVAILABLE, RedisGuard, connect
from prometheus_client import CollectorRegistry

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess
from tests.support.redis_server import RedisServer


def guard_for(url: str, timeout: float = 1.0, retry_after: float = 0.3) -> RedisGuard:
    return RedisGuard(connect(url, timeout), retry_after, GatewayMetrics(CollectorRegistry()))


def errors(guard: RedisGuard, operation: str) -> float:
    value = guard._metrics.registry.get_sample_value(
        "llm_redis_errors_total", {"operation": operation}
    )
    return value or 0.0


async def test_scripts_run_by_sha_and_load_themselves_after_a_flush(
    redis_server: RedisServer,
) -> None:
    guard = guard_for(redis_server.url)
    try:
        source = "return redis.call('ECHO', ARGV[1])"
        assert await guard.script("echo", source, [], ["one"]) == b"one"
        await guard.client.script_flush()
        assert await guard.script("echo", source, [], ["two"]) == b"two"  # NOSCRIPT, LOAD
        assert errors(guard, "echo") == 0
    finally:
        await guard.aclose()


async def test_an_error_reply_fails_that_call_only(redis_server: RedisServer) -> None:
    """WRONGTYPE (or OOM, or a script error) is Redis answering: counted, and the next
    call goes to Redis as usual (only a lost connection or a timeout trips the guard)."""
    guard = guard_for(redis_server.url, retry_after=60)
    client = guard.client
    try:
        await client.delete("a-list")
        await client.rpush("a-list", "x")
        assert await guard.run("get", lambda: client.get("a-list")) is UNAVAILABLE
        assert errors(guard, "get") == 1
        assert guard.available
        assert await guard.run("ping", client.ping) is True
        failing = "return redis.call('INCR', KEYS[1])"
        assert await guard.script("incr", failing, ["a-list"], []) is UNAVAILABLE
        assert guard.available
    finally:
        await guard.aclose()


@pytest.mark.process
async def test_password_acl_user_and_database(tmp_path: Path) -> None:
    port = free_port()
    server = ManagedProcess(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--requirepass", "s3cret"], port, tmp_path / "redis.log",
    ).start()  # fmt: skip
    guards: list[RedisGuard] = []
    try:
        admin = guard_for(f"redis://:s3cret@127.0.0.1:{port}/4")
        guards.append(admin)
        await admin.client.set("where", "db4")
        await admin.client.acl_setuser(
            "app", enabled=True, passwords=["+app-pw"], keys=["*"], commands=["+@all"]
        )
        other = guard_for(f"redis://app:app-pw@127.0.0.1:{port}/0")
        guards.append(other)
        assert await other.client.get("where") is None
        assert await other.ping()
        wrong = guard_for(f"redis://:nope@127.0.0.1:{port}/0", retry_after=60)
        guards.append(wrong)
        assert not await wrong.ping()
        assert not wrong.available  # a Redis we cannot log in to is one we cannot use
    finally:
        for guard in guards:
            await guard.aclose()
        server.stop()


async def test_a_frozen_redis_trips_the_guard_within_the_timeout(own_redis: RedisServer) -> None:
    # retry_after is long enough that a busy machine cannot let it lapse between steps.
    guard = guard_for(own_redis.url, timeout=0.2, retry_after=3.0)
    calls: list[str] = []

    async def ping() -> bool:
        calls.append("ping")
        return bool(await guard.client.ping())

    try:
        assert await guard.ping()
        own_redis.pause()
        # The timeout ends the call (generously bounded: a hang would hit pytest's own).
        assert await asyncio.wait_for(guard.run("ping", ping), 30) is UNAVAILABLE
        assert calls == ["ping"]
        assert not guard.available
        # Skipped while down: Redis is not asked at all, so no second timeout.
        assert await guard.run("ping", ping) is UNAVAILABLE
        assert calls == ["ping"]
        own_redis.resume()
        deadline = time.monotonic() + 30
        while not guard.available:  # retry_after lapses
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert await guard.run("ping", ping) is True  # reconnected
        assert calls == ["ping", "ping"]
    finally:
        own_redis.resume()
        await guard.aclose()


async def test_a_restarted_redis_is_used_again(own_redis: RedisServer) -> None:
    guard = guard_for(own_redis.url, timeout=0.5, retry_after=0.1)
    try:
        assert await guard.ping()
        own_redis.stop()
        assert not await guard.ping()
        own_redis.start()
        deadline = time.monotonic() + 5
        while not await guard.ping():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert await guard.run("ping", guard.client.ping) is True
    finally:
        await guard.aclose()


def test_a_rediss_url_takes_the_ca_file_and_plain_urls_ignore_it(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    tls = connect("rediss://127.0.0.1:6380/0", 0.5, ca).connection_pool.connection_kwargs
    assert tls["ssl_ca_certs"] == str(ca)
    plain = connect("redis://127.0.0.1:6379/0", 0.5, ca).connection_pool.connection_kwargs
    assert "ssl_ca_certs" not in plain
