"""Draining an instance, within one replica (no Redis): nothing new goes there, what
runs finishes, the queue goes elsewhere or waits; an until=ready drain ends when the
instance answers again after being down."""

from __future__ import annotations

import asyncio
import logging

import pytest
from llm_gateway.routing.drains import Drain, Drains, state
from llm_gateway.routing.report import instances_report

from tests.gateway.routing.conftest import instance
from tests.gateway.routing.test_dispatcher import clock_of, dispatcher, sample, settle, ticket

ROUTER = "llm_gateway.routing"


def drain_state(d: object, name: str) -> float:
    return sample(d, "llm_instance_drain_state", {"ollama_instance": name})  # type: ignore[arg-type]


async def test_a_drained_instance_takes_nothing_new_and_finishes_what_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=ROUTER)
    a, b = instance("a", "m", num_parallel=1), instance("b", "m", num_parallel=1)
    d = dispatcher(a, b)
    on_a = await d.acquire(ticket())
    assert on_a.instance is a
    assert await d.drains.drain("a") is False  # not shared: no Redis here
    assert (a.draining, a.usable, state(a, d.drains.get("a"))) == (True, False, "draining")
    assert drain_state(d, "a") == 1
    on_b = await d.acquire(ticket())
    assert on_b.instance is b  # the only slot left
    waiting = asyncio.ensure_future(d.acquire(ticket()))
    await settle()
    on_a.release()  # a's slot frees, but a is drained: the request keeps waiting
    await settle()
    assert not waiting.done()
    assert state(a, d.drains.get("a")) == "drained"
    assert drain_state(d, "a") == 2
    assert "drained a: this replica has no request in flight there" in caplog.messages
    on_b.release()
    grant = await asyncio.wait_for(waiting, 5)
    assert grant.instance is b
    grant.release()


async def test_an_undrain_places_the_waiting_requests_there_at_once() -> None:
    a = instance("a", "m", num_parallel=1)
    d = dispatcher(a)
    await d.drains.drain("a")
    waiting = asyncio.ensure_future(d.acquire(ticket(deadline=60)))
    await settle()
    assert not waiting.done()
    await d.drains.undrain("a")
    grant = await asyncio.wait_for(waiting, 5)
    assert grant.instance is a
    assert (a.draining, state(a, d.drains.get("a")), drain_state(d, "a")) == (False, "healthy", 0)
    grant.release()


async def test_an_until_ready_drain_ends_when_the_instance_answers_after_being_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ROUTER)
    a, b = instance("a", "m"), instance("b", "m")
    d = dispatcher(a, b)
    await d.drains.drain("a", until="ready")
    d.pump()  # polls keep coming: up, so the drain holds
    assert a.draining
    a.up = False  # its container is stopped: the poll fails
    d.pump()
    drain = d.drains.get("a")
    assert drain is not None
    assert drain.down_at == d.clock.wall()
    assert state(a, drain) == "down"
    a.up = True  # a poll sent before it was seen down cannot end the drain
    d.pump()
    assert a.draining
    clock_of(d).advance(1.5)
    a.polled_at = d.clock.wall()  # the new container answers the next poll
    d.pump()
    assert (d.drains.get("a"), a.draining) == (None, False)
    assert "undrained ollama instance a: it answers again" in caplog.messages
    grants = [await d.acquire(ticket()) for _ in range(3)]
    assert {g.instance.name for g in grants} == {"a", "b"}
    for grant in grants:
        grant.release()


async def test_an_until_undrain_drain_outlives_a_restart() -> None:
    a = instance("a", "m")
    d = dispatcher(a)
    await d.drains.drain("a")
    a.up = False
    d.pump()
    a.up = True
    d.pump()
    assert a.draining
    assert state(a, d.drains.get("a")) == "drained"


async def test_a_drain_moves_a_reservation_for_a_load_elsewhere() -> None:
    a = instance("a", "big-a", num_parallel=1, max_loaded=1)
    b = instance("b", "big-b", num_parallel=1, max_loaded=1)
    d = dispatcher(a, b)
    a.reserved_for = "third"
    await d.drains.drain("a")
    assert a.reserved_for is None


def test_the_admin_report_names_state_drain_and_in_flight_everywhere() -> None:
    a = instance("a", "m")
    a.models["m"].in_flight, a.models["m"].elsewhere = 1, 2
    down = instance("down", "m")
    down.up = False
    report = instances_report([a, down], {"a": Drain(since=1_800_000_000.0, until="ready")})
    assert report == [
        {
            "name": "a",
            "url": "http://a",
            "state": "draining",
            "drain": {"since": 1_800_000_000.0, "until": "ready", "down_at": 0.0},
            "in_flight": 3,
            "in_flight_here": 1,
            "models": {"m": {"state": "loaded", "in_flight": 3}},
        },
        {
            "name": "down",
            "url": "http://down",
            "state": "down",
            "drain": None,
            "in_flight": 0,
            "in_flight_here": 0,
            "models": {"m": {"state": "loaded", "in_flight": 0}},
        },
    ]


def test_a_drain_read_from_redis_is_checked() -> None:
    assert Drain.from_json(b'{"since": 5, "until": "ready"}') == Drain(5.0, "ready")
    assert Drain.from_json(b'{"since": 5, "until": "never"}') is None
    assert Drain.from_json(b"not json") is None
    assert Drain.from_json(b"[]") is None


async def test_drains_alone_need_no_redis() -> None:
    drains = Drains(clock=dispatcher().clock)
    assert not drains.shared
    await drains.start()
    assert await drains.drain("x") is False
    assert drains.get("x") is not None
    await drains.stop()
