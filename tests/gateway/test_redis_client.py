"""The gateway's pipelined Redis client against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from llm_gateway.redis_client import RedisAddress, RedisClient, RedisReplyError

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess
from tests.support.redis_server import RedisServer


def test_addresses() -> None:
    plain = RedisAddress.parse("redis://127.0.0.1:6390/2")
    assert (plain.host, plain.port, plain.db, plain.password, plain.tls) == (
        "127.0.0.1",
        6390,
        2,
        None,
        False,
    )
    secret = RedisAddress.parse("rediss://app:s%40cret@redis:6380")
    assert (secret.username, secret.password, secret.db, secret.tls) == ("app", "s@cret", 0, True)
    assert RedisAddress.parse("redis://:pw@h").password == "pw"
    assert RedisAddress.parse("unix:///run/redis.sock?db=3").unix_path == "/run/redis.sock"
    with pytest.raises(ValueError, match="not a Redis URL"):
        RedisAddress.parse("http://x")


async def test_pipelined_calls_keep_their_order(redis_server: RedisServer) -> None:
    client = RedisClient(redis_server.url, timeout=1.0)
    try:
        await client.call("DEL", "order")
        results = await asyncio.gather(*(client.call("INCR", "order") for _ in range(200)))
        assert results == list(range(1, 201))
        # A caller that gives up does not shift anyone else's reply.
        slow = asyncio.ensure_future(client.call("GET", "order"))
        slow.cancel()
        assert await client.call("SET", "k", b"\x00bin\xff") == b"OK"
        assert await client.call("GET", "k") == b"\x00bin\xff"
        with pytest.raises(RedisReplyError, match="WRONGTYPE"):
            await client.call("LPUSH", "k", "x")
    finally:
        await client.aclose()


async def test_commands_sent_in_one_turn_leave_together(redis_server: RedisServer) -> None:
    client = RedisClient(redis_server.url, timeout=1.0)
    try:
        await client.call("DEL", "batched")
        protocol = client._protocol
        assert protocol is not None
        assert protocol.transport is not None
        transport = protocol.transport
        writes: list[bytes] = []
        real_write = transport.write

        def counting_write(data: bytes) -> None:
            writes.append(data)
            real_write(data)

        protocol.transport = type("T", (), {"write": staticmethod(counting_write),
                                           "abort": transport.abort})()  # fmt: skip
        # On an idle connection a command leaves at once, before the turn ends.
        reply = protocol.send(["INCR", "batched"], 0.0)
        assert len(writes) == 1
        assert await reply == 1
        # The first of many leaves at once; the others, sent in the same turn, together.
        results = await asyncio.gather(*(client.call("INCR", "batched") for _ in range(50)))
        assert results == list(range(2, 52))
        assert [w.count(b"INCR") for w in writes[1:]] == [1, 49]
    finally:
        await client.aclose()


async def test_a_call_on_a_closed_connection_fails_at_once(redis_server: RedisServer) -> None:
    client = RedisClient(redis_server.url, timeout=5.0)
    try:
        await client.call("PING")
        protocol = client._protocol
        assert protocol is not None
        protocol.fail(ConnectionError("gone"))
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="closed"):
            await protocol.send(["PING"], started)
        assert time.monotonic() - started < 1.0  # not left to the watchdog
        assert await client.call("PING") == b"PONG"  # the next call reconnects
    finally:
        await client.aclose()


async def test_scripts_load_themselves_after_a_flush(redis_server: RedisServer) -> None:
    client = RedisClient(redis_server.url, timeout=1.0)
    try:
        source = "return redis.call('ECHO', ARGV[1])"
        assert await client.script(source, [], ["one"]) == b"one"
        await client.call("SCRIPT", "FLUSH")
        assert await client.script(source, [], ["two"]) == b"two"  # NOSCRIPT, then LOAD
    finally:
        await client.aclose()


async def test_password_and_database(tmp_path: Path) -> None:
    port = free_port()
    server = ManagedProcess(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--requirepass", "s3cret"], port, tmp_path / "redis.log",
    ).start()  # fmt: skip
    try:
        client = RedisClient(f"redis://:s3cret@127.0.0.1:{port}/4", timeout=1.0)
        await client.call("SET", "where", "db4")
        assert await client.call("CLIENT", "INFO") is not None
        other = RedisClient(f"redis://:s3cret@127.0.0.1:{port}/0", timeout=1.0)
        assert await other.call("GET", "where") is None
        wrong = RedisClient(f"redis://:nope@127.0.0.1:{port}/0", timeout=1.0)
        with pytest.raises(RedisReplyError):
            await wrong.call("PING")
        for c in (client, other, wrong):
            await c.aclose()
    finally:
        server.stop()


async def test_a_frozen_redis_fails_calls_within_the_timeout(own_redis: RedisServer) -> None:
    client = RedisClient(own_redis.url, timeout=0.2)
    try:
        assert await client.call("PING") == b"PONG"
        own_redis.pause()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.call("PING")
        assert time.monotonic() - started < 1.0
        own_redis.resume()
        assert await client.call("PING") == b"PONG"  # reconnected
    finally:
        own_redis.resume()
        await client.aclose()


async def test_a_restarted_redis_is_reconnected(own_redis: RedisServer) -> None:
    client = RedisClient(own_redis.url, timeout=0.5)
    try:
        assert await client.call("PING") == b"PONG"
        own_redis.stop()
        with pytest.raises((ConnectionError, OSError)):
            await client.call("PING")
        own_redis.start()
        deadline = time.monotonic() + 5
        while True:
            try:
                assert await client.call("PING") == b"PONG"
                break
            except (ConnectionError, OSError):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()
