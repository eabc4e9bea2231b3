"""Replicas sharing in-flight counts and queue heads through a real Redis (peers.py):
together they take no more than an instance's slots, and a freed slot goes to the
replica with the better waiting request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.redis_guard import RedisGuard, connect
from llm_gateway.routing.clock import ManualClock
from llm_gateway.routing.dispatcher import Dispatcher
from llm_gateway.routing.fair_queue import FairQueue
from llm_gateway.routing.grant import Grant
from llm_gateway.routing.peers import PeerSync, merge
from llm_gateway.vocabulary import PRIORITIES
from prometheus_client import CollectorRegistry

from tests.gateway.routing.conftest import instance
from tests.gateway.routing.test_dispatcher import ticket
from tests.support.redis_server import RedisServer

INTERACTIVE, BATCH = PRIORITIES.index("interactive"), PRIORITIES.index("batch")


async def replica(redis_url: str, clock: ManualClock) -> Dispatcher:
    """A replica on `clock` (shared: replicas compare queue heads by wall-clock time)."""
    metrics = GatewayMetrics(CollectorRegistry())
    d = Dispatcher(
        [instance("gpu-1", "m", num_parallel=1)], FairQueue(100), metrics,
        label=lambda model: model, poll_seconds=60, load_patience=60, clock=clock,
    )  # fmt: skip
    guard = RedisGuard(connect(redis_url, 1.0), 0.2, metrics)
    d.peers = PeerSync(guard, d.peer_state, d.apply_peers, heartbeat=0.5, clock=clock)
    await d.peers.start()  # (the /api/ps poller is not started: no Ollama here)
    return d


@pytest.fixture
async def two(redis_server: RedisServer) -> AsyncIterator[tuple[Dispatcher, Dispatcher]]:
    import redis as sync_redis

    sync_redis.Redis.from_url(redis_server.url).flushdb()
    clock = ManualClock()
    one, other = await replica(redis_server.url, clock), await replica(redis_server.url, clock)
    yield one, other
    for d in (one, other):
        assert d.peers is not None
        await d.peers.stop()


async def until(condition: object, timeout: float = 10.0) -> None:
    """Until `condition()` holds (a bound, generous for a busy machine; not a measure)."""
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_two_replicas_take_one_slot_between_them(two: tuple[Dispatcher, Dispatcher]) -> None:
    one, other = two
    held = await asyncio.wait_for(one.acquire(ticket()), 10)
    gpu = other.instances[0]
    await until(lambda: gpu.models["m"].elsewhere == 1)
    waiting = asyncio.ensure_future(other.acquire(ticket()))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # the one slot is the other replica's
    held.release()
    grant: Grant = await asyncio.wait_for(waiting, 10)  # seen within a Redis round trip or two
    assert grant.instance is gpu
    await until(lambda: one.instances[0].models["m"].elsewhere == 1)
    grant.release()


async def test_a_freed_slot_goes_to_the_better_request_whichever_replica_holds_it(
    two: tuple[Dispatcher, Dispatcher],
) -> None:
    one, other = two
    held = await asyncio.wait_for(one.acquire(ticket()), 10)
    await until(lambda: other.instances[0].models["m"].elsewhere == 1)
    batch_here = asyncio.ensure_future(one.acquire(ticket(priority=BATCH, key="batch")))
    await asyncio.sleep(0.05)
    human_there = asyncio.ensure_future(other.acquire(ticket(priority=INTERACTIVE, key="human")))
    await until(lambda: "m" in one.fairness.view.heads)
    held.release()  # freed on the replica whose own waiter is only batch
    grant = await asyncio.wait_for(human_there, 10)
    assert not batch_here.done()
    grant.release()
    (await asyncio.wait_for(batch_here, 10)).release()


async def test_a_replica_without_redis_goes_on_alone(redis_server: RedisServer) -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    clock = ManualClock()
    d = Dispatcher(
        [instance("gpu-1", "m", num_parallel=1)], FairQueue(10), metrics,
        label=lambda model: model, poll_seconds=60, load_patience=60, clock=clock,
    )  # fmt: skip
    guard = RedisGuard(connect("redis://127.0.0.1:1/0", 0.2), 0.2, metrics)
    d.peers = PeerSync(guard, d.peer_state, d.apply_peers, heartbeat=0.2, clock=clock)
    await d.peers.start()
    try:
        grant = await asyncio.wait_for(d.acquire(ticket()), 10)
        grant.release()
    finally:
        await d.peers.stop()


def test_views_merge_the_others_and_leave_out_this_replica() -> None:
    states = {
        "me": {"in_flight": {"gpu-1|m": 3}, "served": {"m|a": 3}, "heads": {"m": [0, 5, "a"]}},
        "r2": {
            "in_flight": {"gpu-1|m": 1, "gpu-2|x": 2},
            "served": {"m|a": 1, "x|b": 2},
            "heads": {"m": [1, 1, "b"]},
        },
        "r3": {
            "in_flight": {"gpu-1|m": 1},
            "served": {"m|b": 1},
            "heads": {"m": [0, 9, "c"], "x": [1, 3, "a"]},
        },
    }
    view = merge(states, "me")
    assert view.in_flight == {"gpu-1": {"m": 2}, "gpu-2": {"x": 2}}
    assert view.served == {("m", "a"): 1, ("x", "b"): 2, ("m", "b"): 1}
    assert sorted(view.heads["m"]) == [(0, 9, "c"), (1, 1, "b")]
    assert view.heads["x"] == [(1, 3, "a")]
    assert view.replicas == 2


async def test_within_a_class_the_key_holding_fewer_slots_goes_first_across_replicas(
    two: tuple[Dispatcher, Dispatcher],
) -> None:
    """A flooding key's backlog waits on one replica, a steady key's request on the
    other; the flood holds the slot, so the freed slot goes to the steady key."""
    one, other = two
    held = await asyncio.wait_for(one.acquire(ticket(key="flood")), 10)
    # The other replica knows the slot is taken (else it would take it for the steady key).
    await until(lambda: other.instances[0].models["m"].elsewhere == 1)
    flood_backlog = [
        asyncio.ensure_future(one.acquire(ticket(key="flood", deadline=60))) for _ in range(3)
    ]
    await asyncio.sleep(0.05)
    steady = asyncio.ensure_future(other.acquire(ticket(key="steady", deadline=60)))
    await until(lambda: "m" in one.fairness.view.heads)
    held.release()
    grant = await asyncio.wait_for(steady, 10)
    assert not any(task.done() for task in flood_backlog)
    grant.release()
    for task in flood_backlog:
        (await asyncio.wait_for(task, 10)).release()
