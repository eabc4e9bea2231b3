"""Flights land (leave the registry, run their landing callbacks) however their task ends."""

from __future__ import annotations

import asyncio

from llm_gateway.flight import TAIL_BYTES, Flight, FlightRegistry
from llm_gateway.vocabulary import Form


async def test_a_flight_cancelled_before_its_task_ran_still_lands() -> None:
    registry = FlightRegistry()
    flight = Flight("llm:c1:key", Form.NDJSON)
    landed: list[str] = []
    started: list[str] = []

    async def run(flight: Flight) -> None:
        started.append("ran")

    registry.add(flight)
    flight.on_landed(lambda: landed.append("landed"))
    flight.launch(run)
    flight.join()
    flight.leave()  # the only follower gone before the task's first step: cancelled
    await asyncio.sleep(0.01)
    assert started == []
    assert landed == ["landed"]
    assert flight.done
    assert not flight.complete
    assert registry.get("llm:c1:key") is None  # an identical request will not join it


async def test_a_flight_that_ran_lands_once() -> None:
    registry = FlightRegistry()
    flight = Flight("llm:c1:key", Form.NDJSON)
    landed: list[str] = []

    async def run(flight: Flight) -> None:
        flight.started(200, "application/x-ndjson")
        flight.publish(b"{}\n")
        flight.finish(True)

    registry.add(flight)
    flight.on_landed(lambda: landed.append("landed"))
    flight.launch(run)
    flight.join()
    assert [chunk async for chunk in flight.follow()] == [b"{}\n"]
    await asyncio.sleep(0.01)
    assert landed == ["landed"]
    assert flight.complete
    assert registry.get("llm:c1:key") is None


async def test_an_oversized_flight_keeps_a_tail_only_and_leaves_the_registry() -> None:
    registry = FlightRegistry()
    flight = Flight("llm:c1:big", Form.NDJSON, keep_bytes=1000)
    registry.add(flight)
    flight.join()
    reader = flight.follow()
    chunk = b"x" * 999 + b"\n"
    for _ in range(200):  # 200 KB through a follower that keeps up
        flight.publish(chunk)
        assert await anext(reader) == chunk
    assert flight.oversized
    assert registry.get("llm:c1:big") is None  # nobody joins what cannot be replayed
    held = sum(len(c) for c in flight.chunks)
    assert held < TAIL_BYTES + 2 * len(chunk), held
    await asyncio.wait_for(flight.room(), 1)  # the follower is up to date: no wait
    await reader.aclose()


async def test_a_slow_follower_holds_the_writer_and_one_gone_never_blocks_it() -> None:
    flight = Flight(None, Form.NDJSON, keep_bytes=1000)
    flight.join()
    flight.join()
    fast, slow = flight.follow(), flight.follow()
    chunk = b"y" * 999 + b"\n"
    flight.publish(chunk)
    await anext(fast)
    await anext(slow)
    for _ in range(100):
        flight.publish(chunk)
        await anext(fast)
    waiting = asyncio.ensure_future(flight.room())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # the slow follower is 100 KB behind: the writer waits
    flight.leave()  # the slow one goes away, its generator not closed yet
    await asyncio.wait_for(waiting, 1)
    await fast.aclose()
    await slow.aclose()
