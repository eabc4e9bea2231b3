"""Commands of one event-loop turn go to Redis as one pipeline (redis_batch.py), each
caller getting its own reply or its own error, against a real redis-server."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis
from llm_gateway.redis_batch import BatchingClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tests.support.redis_server import RedisServer


async def test_each_caller_of_a_turn_gets_its_own_reply_in_order(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    batch = BatchingClient(client)
    try:
        await client.delete("counter")
        replies = await asyncio.gather(*(batch.execute("INCR", "counter") for _ in range(50)))
        assert replies == list(range(1, 51))
        # Mixed commands in one turn, each its own reply.
        await client.set("k", "v")
        get, echo, incr = await asyncio.gather(
            batch.execute("GET", "k"), batch.execute("ECHO", "e"), batch.execute("INCR", "counter")
        )
        assert (get, echo, incr) == (b"v", b"e", 51)
    finally:
        await client.aclose()


async def test_the_callers_of_one_turn_share_one_connection(redis_server: RedisServer) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    batch = BatchingClient(client)
    try:
        before = (await admin.info("clients"))["connected_clients"]
        await asyncio.gather(*(batch.execute("PING") for _ in range(40)))
        # One pipeline: the pool opened a single connection for all forty.
        assert (await admin.info("clients"))["connected_clients"] == before + 1
    finally:
        await client.aclose()
        await admin.aclose()


async def test_an_error_reply_fails_only_its_own_caller(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    batch = BatchingClient(client)
    try:
        await client.delete("a-list", "n")
        await client.rpush("a-list", "x")
        results = await asyncio.gather(
            batch.execute("INCR", "n"),
            batch.execute("INCR", "a-list"),  # WRONGTYPE
            batch.execute("INCR", "n"),
            return_exceptions=True,
        )
        assert results[0] == 1
        assert isinstance(results[1], ResponseError)
        assert results[2] == 2
        # The leader's own error is raised to the leader.
        results = await asyncio.gather(
            batch.execute("INCR", "a-list"), batch.execute("INCR", "n"), return_exceptions=True
        )
        assert isinstance(results[0], ResponseError)
        assert results[1] == 3
    finally:
        await client.aclose()


async def test_a_lost_redis_fails_every_caller_of_the_batch(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    batch = BatchingClient(client)
    try:
        assert await batch.execute("PING") is True
        own_redis.stop()
        results = await asyncio.gather(
            *(batch.execute("PING") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError | OSError) for r in results), results
    finally:
        await client.aclose()


async def test_a_leader_that_gives_up_still_answers_its_followers(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    batch = BatchingClient(client)
    try:
        await client.delete("c", "nothing")
        # All in one turn: the first leads; its BLPOP holds the batch on Redis a while.
        leader = asyncio.ensure_future(batch.execute("BLPOP", "nothing", 0.3))
        followers = [asyncio.ensure_future(batch.execute("INCR", "c")) for _ in range(3)]
        await asyncio.sleep(0.1)
        leader.cancel()
        assert await asyncio.gather(*followers) == [1, 2, 3]
        assert leader.cancelled()
    finally:
        await client.aclose()


async def test_followers_are_answered_when_the_leader_is_cancelled_before_its_batch(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    batch = BatchingClient(client)
    try:
        await client.delete("led", "followed")
        # One turn: the leader starts its batch and yields, the followers join it, then
        # this test runs again, before the leader's turn comes back: cancel it there.
        leader = asyncio.ensure_future(batch.execute("INCR", "led"))
        followers = [asyncio.ensure_future(batch.execute("INCR", "followed")) for _ in range(3)]
        await asyncio.sleep(0)
        assert batch._forming is not None
        assert len(batch._forming) == 3
        leader.cancel()
        async with asyncio.timeout(30):
            replies = await asyncio.gather(*followers)
        assert sorted(replies) == [1, 2, 3]
        assert leader.cancelled()
        # The cancelled leader's own command never went out.
        assert await client.get("led") is None
    finally:
        await client.aclose()
