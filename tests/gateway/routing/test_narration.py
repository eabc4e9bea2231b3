"""The router narrates each decision at debug level (logger `llm_gateway.routing`), the
way Ollama's scheduler does: placed, queued, shed, reserved for a load."""

from __future__ import annotations

import asyncio
import logging

import pytest
from llm_gateway.routing.shed import Shed

from tests.gateway.routing.conftest import instance
from tests.gateway.routing.test_dispatcher import clock_of, dispatcher, settle, ticket

ROUTER = "llm_gateway.routing"


def narrated(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ROUTER and r.levelname == "DEBUG"]


async def test_a_placement_says_where_and_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=ROUTER)
    d = dispatcher(instance("a", "other"), instance("b", "m", num_parallel=2))
    grant = await d.acquire(ticket(key="alice"))
    cold = await d.acquire(ticket("new", key="bob"))
    lines = narrated(caplog)
    assert (
        "placed m request of key alice on b after 0.00s in the queue: "
        "loaded there, 0 of its 2 slots taken" in lines
    )
    assert (
        "placed new request of key bob on a after 0.00s in the queue: "
        "loads beside the models loaded there" in lines
    )
    grant.release()
    cold.release()


async def test_a_queued_request_says_its_place_and_estimate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=ROUTER)
    d = dispatcher(instance("a", "m", num_parallel=1))
    d.stats("m").service = 4.0
    holding = await d.acquire(ticket())
    waiting = asyncio.ensure_future(d.acquire(ticket(key="bob", deadline=60)))
    await settle()
    assert (
        "queued m request of key bob (interactive): 0 ahead, estimated wait 4.00s, deadline 60s"
        in narrated(caplog)
    )
    holding.release()
    (await waiting).release()


async def test_a_shed_says_its_estimate_and_deadline(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=ROUTER)
    d = dispatcher(instance("a", "m", num_parallel=1))
    d.stats("m").service = 10.0
    holding = await d.acquire(ticket())
    with pytest.raises(Shed):
        await d.acquire(ticket(key="bob", deadline=5))
    assert (
        "shed m request of key bob (interactive): overloaded, estimated wait 10.00s, "
        "5.00s of its deadline left, Retry-After 10s" in narrated(caplog)
    )
    holding.release()


async def test_a_reservation_for_a_load_is_told(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=ROUTER)
    a = instance("a", "big-a", num_parallel=1, max_loaded=1)
    d = dispatcher(a, patience=8)
    holding = await d.acquire(ticket("big-a"))
    third = asyncio.ensure_future(d.acquire(ticket("third", deadline=60)))
    await settle()
    clock_of(d).advance(8)
    assert (
        "reserved a for a load of third, loaded nowhere and waited 8.0s: nothing new for "
        "other models goes there until it has loaded" in narrated(caplog)
    )
    holding.release()
    (await asyncio.wait_for(third, 5)).release()


async def test_nothing_is_narrated_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Decisions are per request: at info they would flood a production log."""
    caplog.set_level(logging.INFO, logger=ROUTER)
    d = dispatcher(instance("a", "m"))
    (await d.acquire(ticket())).release()
    assert [r for r in caplog.records if r.name == ROUTER] == []
