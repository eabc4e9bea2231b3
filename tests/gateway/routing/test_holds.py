"""Waiting for the busy instance that holds a prompt's prefix: only when it is sooner.

A follow-up whose history is cached on an instance with every slot taken either starts
now elsewhere and pays the whole prefill of that history, or waits for a slot where it
is cached. `holds.py` waits only when a slot there is expected to free before that
prefill would be done, and never longer than the prefill; the dispatcher gives the
freed slot to the request that waited for it. Every test runs on a `ManualClock`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routing.clock import ManualClock
from llm_gateway.routing.dispatcher import Dispatcher
from llm_gateway.routing.fair_queue import FairQueue
from llm_gateway.routing.grant import Grant, Ticket
from llm_gateway.routing.holds import (
    SPEED_MIN_CHARS,
    SPEED_SAMPLES,
    PrefillSpeed,
    slot_frees_in,
    worth_waiting,
)
from llm_gateway.routing.instances import Instance, Residency, State
from llm_gateway.routing.prefix import Affinity, prompt_blocks, rendered
from llm_gateway.vocabulary import Kind
from prometheus_client import CollectorRegistry

from tests.gateway.routing.conftest import instance

# 10,000 characters of history: at 1 ms a character, 10 s of prefill where it is not
# cached (a 2,500-token history on a 70B model at 250 tokens/s).
HISTORY = "an earlier turn of this conversation " * 270
PER_CHAR = 0.001
SERVICE = 20.0  # seconds a request holds its slot


def test_the_prefill_speed_is_the_median_of_long_enough_samples() -> None:
    speed = PrefillSpeed()
    speed.note("m", SPEED_MIN_CHARS - 1, 100.0)  # too short: the estimate's error swamps it
    for seconds in (2.0, 3.0, 4.0):
        speed.note("m", 1000 * 4, seconds)
    assert speed.per_char("m") is None  # too few yet: nobody waits
    speed.note("m", 4000, 400.0)  # an outlier (a stall) is damped by the median
    assert speed.per_char("m") == pytest.approx(3.5 / 4000)
    assert speed.per_char("other") is None


def test_a_slot_frees_when_the_request_nearest_its_end_finishes() -> None:
    residency = Residency("m", State.LOADED, in_flight=2, starts=[100.0, 112.0])
    # At 115: one has run 15 s of its 20 (5 left), the other 3 (17 left).
    assert slot_frees_in(residency, 2, SERVICE, 115.0, waiting=0) == pytest.approx(5.0)
    # A second request already waiting for it gets the second slot to free.
    assert slot_frees_in(residency, 2, SERVICE, 115.0, waiting=1) == pytest.approx(17.0)
    assert slot_frees_in(residency, 2, SERVICE, 115.0, waiting=2) is None  # cannot tell
    # Another replica's request there: its start is unknown, half a service is assumed.
    shared = Residency("m", State.LOADED, in_flight=1, elsewhere=1, starts=[112.0])
    assert slot_frees_in(shared, 2, SERVICE, 115.0, waiting=0) == pytest.approx(10.0)
    # A free slot already: no wait.
    free = Residency("m", State.LOADED, in_flight=1, starts=[112.0])
    assert slot_frees_in(free, 2, SERVICE, 115.0, waiting=0) == 0.0


def test_it_waits_only_when_the_slot_comes_before_the_prefill_would_end() -> None:
    assert worth_waiting(4.0, saved_seconds=10.0, left=60.0)
    assert not worth_waiting(12.0, saved_seconds=10.0, left=60.0)
    assert not worth_waiting(4.0, saved_seconds=10.0, left=3.0)  # past its deadline
    assert not worth_waiting(None, saved_seconds=10.0, left=60.0)


# -- through the dispatcher ------------------------------------------------------------


def chat(*turns: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": "You are terse."}]
    for number, text in enumerate(turns):
        messages.append({"role": "user" if number % 2 == 0 else "assistant", "content": text})
    return {"model": "m", "messages": messages}


def ticket(data: dict[str, Any], key: str = "k") -> Ticket:
    text = rendered(Kind.CHAT, data)
    return Ticket("m", key, 0, prefix=prompt_blocks(text, "m"), prompt_chars=len(text))


def dispatcher(*instances: Instance, wait: bool = True, share: float = 10.0) -> Dispatcher:
    d = Dispatcher(
        list(instances), FairQueue(100), GatewayMetrics(CollectorRegistry()),
        label=lambda model: model, poll_seconds=60, load_patience=60, clock=ManualClock(),
        affinity=Affinity(capacity_tokens=100_000, load_share=share, wait=wait),
    )  # fmt: skip
    d.stats("m").service = SERVICE
    assert d._affinity is not None
    if d._affinity.holds is not None:
        for _ in range(SPEED_SAMPLES):  # what earlier answers taught it
            d._affinity.holds.speed.note("m", 10_000, 10_000 * PER_CHAR)
    return d


def waits(d: Dispatcher, outcome: str) -> float:
    value = d._metrics.registry.get_sample_value(
        "llm_affinity_waits_total", {"model": "m", "outcome": outcome}
    )
    return value or 0.0


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def a_busy_home(
    busy_for: float, wait: bool = True
) -> tuple[Dispatcher, ManualClock, Grant, str]:
    """Two one-slot instances. A conversation's first turn went to one of them (its
    home), whose slot is now taken by another request that started `SERVICE - busy_for`
    seconds ago; the other instance is idle."""
    d = dispatcher(instance("a", "m", num_parallel=1), instance("b", "m", num_parallel=1),
                   wait=wait)  # fmt: skip
    clock = d.clock
    assert isinstance(clock, ManualClock)
    first = await asyncio.wait_for(d.acquire(ticket(chat(HISTORY))), 5)
    home = first.instance.name
    first.release()
    clock.advance(1.0)
    # An unrelated request takes the home's slot (it is the least recently used there).
    d.instances.sort(key=lambda i: i.name != home)
    other = await asyncio.wait_for(d.acquire(ticket(chat("unrelated " * 10), key="o")), 5)
    assert other.instance.name == home
    clock.advance(SERVICE - busy_for)
    return d, clock, other, home


async def test_a_follow_up_waits_for_its_home_when_a_slot_frees_sooner_than_prefill() -> None:
    d, clock, blocking, home = await a_busy_home(busy_for=3.0)  # frees in 3 s, prefill 10 s
    follow = asyncio.ensure_future(d.acquire(ticket(chat(HISTORY, "an answer", "and then?"))))
    await settle()
    assert not follow.done()  # the other instance is free, but the home is sooner
    assert waits(d, "held") == 1
    snap = d.snapshot()  # what /admin/queue shows
    waiting = {i["name"]: i["waiting_for_prefix"] for i in snap["instances"]}
    assert waiting == {home: 1, ({"a", "b"} - {home}).pop(): 0}
    assert snap["queues"]["m"]["prefill_seconds_per_1000_chars"] == pytest.approx(1.0)
    clock.advance(3.0)
    blocking.release()
    grant = await asyncio.wait_for(follow, 5)
    assert grant.instance.name == home
    assert waits(d, "holder") == 1
    grant.release()


async def test_it_starts_elsewhere_at_once_when_the_home_frees_later_than_prefill() -> None:
    d, _, blocking, home = await a_busy_home(busy_for=15.0)  # 15 s against 10 s
    grant = await asyncio.wait_for(d.acquire(ticket(chat(HISTORY, "an answer", "and?"))), 5)
    assert grant.instance.name != home
    assert waits(d, "held") == 0
    grant.release()
    blocking.release()


async def test_a_wait_ends_at_the_prefill_it_saves_and_the_request_goes_elsewhere() -> None:
    d, clock, blocking, home = await a_busy_home(busy_for=3.0)
    follow = asyncio.ensure_future(d.acquire(ticket(chat(HISTORY, "an answer", "and?"))))
    await settle()
    assert not follow.done()
    clock.advance(9.0)  # the home's request overruns its expected end
    await settle()
    assert not follow.done()
    clock.advance(1.0)  # past the ~9.7 s of prefill (19 blocks) the wait could save
    grant = await asyncio.wait_for(follow, 5)
    assert grant.instance.name != home
    assert waits(d, "elsewhere") == 1
    grant.release()
    blocking.release()


async def test_a_held_request_does_not_keep_others_from_a_free_slot() -> None:
    d, _, blocking, home = await a_busy_home(busy_for=3.0)
    follow = asyncio.ensure_future(d.acquire(ticket(chat(HISTORY, "an answer", "and?"))))
    await settle()
    assert not follow.done()
    other = await asyncio.wait_for(d.acquire(ticket(chat("a new question " * 5), key="n")), 5)
    assert other.instance.name != home  # behind the held one in the queue, yet served now
    blocking.release()
    grant = await asyncio.wait_for(follow, 5)
    assert grant.instance.name == home
    for g in (grant, other):
        g.release()


async def test_a_freed_slot_past_the_load_bound_is_not_taken_by_the_waiting_request() -> None:
    """Its home frees a slot, but with the other instances idle one more request there
    would be over the bound (3 of 3 in flight against a mean of 1): the bound decides,
    and it starts elsewhere at once."""
    a, b, c = (instance(n, "m", num_parallel=3) for n in "abc")
    d = dispatcher(a, b, c, share=1.25)
    clock = d.clock
    assert isinstance(clock, ManualClock)
    first = await asyncio.wait_for(d.acquire(ticket(chat(HISTORY))), 5)
    home = first.instance
    first.release()
    clock.advance(1.0)
    # Three requests run there, all started long enough ago that a slot frees soon.
    started = clock.now() - SERVICE + 2.0
    for _ in range(3):
        home.dispatched("m", 0, started)
    follow = asyncio.ensure_future(d.acquire(ticket(chat(HISTORY, "an answer", "and?"))))
    await settle()
    assert not follow.done()
    assert waits(d, "held") == 1
    home.finished("m", clock.now(), started)  # one slot free there: 2 of 3 in flight
    d.pump()  # would be over the bound, the other instances idle
    grant = await asyncio.wait_for(follow, 5)
    assert grant.instance is not home
    assert waits(d, "elsewhere") == 1
    grant.release()


async def test_without_waiting_a_busy_home_is_never_waited_for() -> None:
    d, _, blocking, home = await a_busy_home(busy_for=3.0, wait=False)
    grant = await asyncio.wait_for(d.acquire(ticket(chat(HISTORY, "an answer", "and?"))), 5)
    assert grant.instance.name != home
    grant.release()
    blocking.release()


async def test_nobody_waits_before_the_prefill_speed_is_known() -> None:
    d, _, blocking, home = await a_busy_home(busy_for=3.0)
    assert d._affinity is not None
    assert d._affinity.holds is not None
    d._affinity.holds.speed.samples.clear()  # no answer has taught it yet
    grant = await asyncio.wait_for(d.acquire(ticket(chat(HISTORY, "an answer", "and?"))), 5)
    assert grant.instance.name != home
    grant.release()
    blocking.release()


async def test_the_time_to_first_byte_teaches_the_prefill_speed() -> None:
    a = instance("a", "m", num_parallel=1)
    d = dispatcher(a)
    assert d._affinity is not None
    assert d._affinity.holds is not None
    speed = d._affinity.holds.speed
    speed.samples.clear()
    clock = d.clock
    assert isinstance(clock, ManualClock)
    for n in range(SPEED_SAMPLES):
        grant = await asyncio.wait_for(d.acquire(ticket(chat(f"conversation {n} " * 600))), 5)
        assert grant.evaluated_chars > SPEED_MIN_CHARS  # nothing of it was cached there
        clock.advance(grant.evaluated_chars * PER_CHAR)
        grant.answered()
        grant.release()
    assert speed.per_char("m") == pytest.approx(PER_CHAR)
