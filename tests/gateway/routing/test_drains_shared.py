"""A drain holds on every replica: two dispatchers sharing one real Redis (drains.py),
and a replica without Redis still honouring the drains it received itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis as sync_redis
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.redis_guard import RedisGuard, connect
from llm_gateway.routing.clock import ManualClock
from llm_gateway.routing.dispatcher import Dispatcher
from llm_gateway.routing.drains import DRAINS, Drains
from llm_gateway.routing.fair_queue import FairQueue
from prometheus_client import CollectorRegistry

from tests.gateway.routing.conftest import instance
from tests.gateway.routing.test_dispatcher import ticket
from tests.support.redis_server import RedisServer


async def replica(redis_url: str, clock: ManualClock) -> Dispatcher:
    """A replica with instances a and b (the /api/ps poller is not started: no Ollama)."""
    metrics = GatewayMetrics(CollectorRegistry())
    guard = RedisGuard(connect(redis_url, 1.0), 0.2, metrics)
    d = Dispatcher(
        [instance("a", "m"), instance("b", "m")], FairQueue(100), metrics,
        label=lambda model: model, poll_seconds=60, load_patience=60, clock=clock,
        drains=Drains(clock, guard, interval=0.2),
    )  # fmt: skip
    await d.drains.start()
    return d


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Until `condition()` holds (a bound, generous for a busy machine; not a measure)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def two(redis_server: RedisServer) -> AsyncIterator[tuple[Dispatcher, Dispatcher]]:
    sync_redis.Redis.from_url(redis_server.url).flushdb()
    clock = ManualClock()
    one, other = await replica(redis_server.url, clock), await replica(redis_server.url, clock)
    yield one, other
    for d in (one, other):
        await d.drains.stop()


async def test_a_drain_made_on_one_replica_holds_on_the_other(
    two: tuple[Dispatcher, Dispatcher],
) -> None:
    one, other = two
    assert await one.drains.drain("a") is True  # in Redis: shared
    assert one.drains.shared
    a_there = other.instances[0]
    await until(lambda: a_there.draining)
    grants = [await asyncio.wait_for(other.acquire(ticket()), 10) for _ in range(2)]
    assert [g.instance.name for g in grants] == ["b", "b"]
    for grant in grants:
        grant.release()
    assert await other.drains.undrain("a") is True
    await until(lambda: not one.instances[0].draining)


async def test_a_replica_started_later_honours_the_drains_at_once(
    two: tuple[Dispatcher, Dispatcher], redis_server: RedisServer
) -> None:
    one, _ = two
    await one.drains.drain("b", until="ready")
    late = await replica(redis_server.url, ManualClock())
    try:
        assert late.instances[1].draining
        drain = late.drains.get("b")
        assert drain is not None
        assert drain.until == "ready"
    finally:
        await late.drains.stop()


async def test_an_instance_seen_down_by_one_replica_and_back_on_another_is_undrained(
    two: tuple[Dispatcher, Dispatcher], redis_server: RedisServer
) -> None:
    one, other = two
    await one.drains.drain("a", until="ready")
    await until(lambda: other.instances[0].draining)
    other.instances[0].up = False  # only the other replica's poll saw the stop
    other.pump()
    await until(lambda: (d := one.drains.get("a")) is not None and d.down_at > 0)
    one.pump()  # one still believes a is up, from a poll sent before: the drain holds
    assert one.instances[0].draining
    assert sync_redis.Redis.from_url(redis_server.url).hexists(DRAINS, "a")
    one.clock.advance(1.5)  # type: ignore[attr-defined]
    one.instances[0].polled_at = one.clock.wall()  # its next poll is answered
    one.pump()
    assert not one.instances[0].draining
    await until(lambda: other.drains.get("a") is None)
    assert not sync_redis.Redis.from_url(redis_server.url).hexists(DRAINS, "a")


async def test_without_redis_a_replica_honours_the_drains_it_received(
    own_redis: RedisServer,
) -> None:
    clock = ManualClock()
    d = await replica(own_redis.url, clock)
    try:
        await d.drains.drain("a")
        own_redis.pause()  # connections stay open, nothing answers
        assert await d.drains.drain("b") is False  # not shared, but honoured here
        assert not d.drains.shared
        await d.drains.sync()  # an unreadable Redis takes no drain away
        assert [i.draining for i in d.instances] == [True, True]
        waiting = asyncio.ensure_future(d.acquire(ticket(deadline=60)))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        own_redis.resume()
        await until(lambda: d.drains.shared, timeout=10)  # written once Redis is back
        assert sorted(sync_redis.Redis.from_url(own_redis.url).hkeys(DRAINS)) == [b"a", b"b"]
        assert [i.draining for i in d.instances] == [True, True]
        waiting.cancel()
    finally:
        await d.drains.stop()
