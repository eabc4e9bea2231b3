"""Flights land (leave the registry, run their landing callbacks) however their task ends."""

from __future__ import annotations

import asyncio

from llm_gateway.cache.entry import Form
from llm_gateway.flight import Flight, FlightRegistry


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
