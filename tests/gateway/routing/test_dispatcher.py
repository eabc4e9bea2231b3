"""Admission and dispatch: slots bound per model, fair order, shedding, load patience.

Every dispatcher here runs on a `ManualClock`: time moves only when a test says so,
so estimates, deadlines and patience are asserted to the exact second.
"""

from __future__ import annotations

import asyncio

import pytest
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routing.clock import ManualClock
from llm_gateway.routing.dispatcher import Dispatcher
from llm_gateway.routing.estimates import RATE_WINDOW, Arrivals
from llm_gateway.routing.fair_queue import FairQueue
from llm_gateway.routing.grant import Grant, Ticket
from llm_gateway.routing.instances import Instance
from llm_gateway.routing.shed import Shed
from llm_gateway.vocabulary import PRIORITIES
from prometheus_client import CollectorRegistry

from tests.gateway.routing.conftest import GB, busy, instance

INTERACTIVE, BATCH = PRIORITIES.index("interactive"), PRIORITIES.index("batch")


def dispatcher(
    *instances: Instance, depth: int = 100, patience: float = 60, clock: ManualClock | None = None
) -> Dispatcher:
    return Dispatcher(
        list(instances), FairQueue(depth), GatewayMetrics(CollectorRegistry()),
        label=lambda model: model, poll_seconds=60, load_patience=patience,
        clock=clock or ManualClock(),
    )  # fmt: skip


def clock_of(d: Dispatcher) -> ManualClock:
    assert isinstance(d.clock, ManualClock)
    return d.clock


def steady_arrivals(rate: float, last: float) -> Arrivals:
    """Arrivals `rate` per second for a whole window, the last one at `last`."""
    arrivals = Arrivals()
    for n in range(RATE_WINDOW, 0, -1):
        arrivals.note(last - (n - 1) / rate)
    return arrivals


def ticket(model: str = "m", key: str = "k", priority: int = INTERACTIVE, deadline: float = 30):
    return Ticket(model=model, key=key, priority=priority, deadline_seconds=deadline)


def sample(d: Dispatcher, name: str, labels: dict[str, str]) -> float:
    value = d._metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_idle_pool_dispatches_at_once_to_the_loaded_instance() -> None:
    d = dispatcher(instance("a", "other"), instance("b", "m"))
    grant = await asyncio.wait_for(d.acquire(ticket()), 5)
    assert (grant.instance.name, grant.loads) == ("b", False)
    assert grant.instance.models["m"].in_flight == 1
    grant.release()
    assert grant.instance.models["m"].in_flight == 0


async def test_each_instance_takes_num_parallel_per_model_and_the_rest_wait() -> None:
    d = dispatcher(instance("a", "m", num_parallel=1))
    first = await d.acquire(ticket())
    second = asyncio.ensure_future(d.acquire(ticket()))
    await settle()
    assert not second.done()
    assert sample(d, "llm_queue_depth", {"model": "m", "priority": "interactive"}) == 1
    first.release()
    grant = await asyncio.wait_for(second, 5)
    assert grant.instance.name == "a"
    assert sample(d, "llm_queue_depth", {"model": "m", "priority": "interactive"}) == 0
    assert sample(d, "llm_queue_wait_seconds_count", {"model": "m", "priority": "interactive"}) == 2


async def test_a_freed_slot_goes_to_the_higher_class_then_fairly_across_keys() -> None:
    d = dispatcher(instance("a", "m", num_parallel=1))
    holding = await d.acquire(ticket())
    order: list[str] = []

    async def wait(name: str, priority: int, key: str) -> None:
        grant = await d.acquire(ticket(priority=priority, key=key))
        order.append(name)
        grant.release()

    tasks = [asyncio.ensure_future(wait(f"flood-{i}", BATCH, "flood")) for i in range(3)]
    await settle()
    tasks.append(asyncio.ensure_future(wait("steady", BATCH, "steady")))
    await settle()
    tasks.append(asyncio.ensure_future(wait("human", INTERACTIVE, "human")))
    await settle()
    holding.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["human", "flood-0", "steady", "flood-1", "flood-2"]


async def test_a_request_that_cannot_start_in_time_is_shed_at_once() -> None:
    d = dispatcher(instance("a", "m", num_parallel=1))
    d.stats("m").service = 10.0  # measured: a request holds its slot 10 s
    holding = await d.acquire(ticket())
    waiting = asyncio.ensure_future(d.acquire(ticket(deadline=60)))
    await settle()
    started = d.clock.now()
    with pytest.raises(Shed) as shed:
        await d.acquire(ticket(deadline=5))  # one of its own ahead: (1 + 1) / 0.1 = 20 s
    assert d.clock.now() == started  # refused without waiting
    assert shed.value.reason == "overloaded"
    assert shed.value.retry_after == pytest.approx(20)
    assert sample(d, "llm_shed_total", {"reason": "overloaded", "priority": "interactive"}) == 1
    assert len(d.queue) == 1  # the shed request left no trace in the queue
    holding.release()
    (await waiting).release()


async def test_a_deadline_that_passes_in_the_queue_sheds_then() -> None:
    d = dispatcher(instance("a", "m", num_parallel=1))
    holding = await d.acquire(ticket())
    waiting = asyncio.ensure_future(d.acquire(ticket(deadline=10)))
    await settle()
    clock_of(d).advance(9)
    await settle()
    assert not waiting.done()
    clock_of(d).advance(1)
    with pytest.raises(Shed) as shed:
        await asyncio.wait_for(waiting, 5)
    assert shed.value.reason == "deadline"
    assert shed.value.retry_after == 10  # nothing measured yet: its own deadline
    assert len(d.queue) == 0
    holding.release()


async def test_a_full_queue_sheds() -> None:
    d = dispatcher(instance("a", "m", num_parallel=1), depth=1)
    holding = await d.acquire(ticket())
    waiting = asyncio.ensure_future(d.acquire(ticket()))
    await settle()
    with pytest.raises(Shed) as shed:
        await d.acquire(ticket())
    assert shed.value.reason == "queue_full"
    holding.release()
    (await waiting).release()


async def test_a_client_gone_while_queued_leaves_the_queue() -> None:
    d = dispatcher(instance("a", "m", num_parallel=1))
    holding = await d.acquire(ticket())
    waiting = asyncio.ensure_future(d.acquire(ticket()))
    await settle()
    waiting.cancel()
    await settle()
    assert len(d.queue) == 0
    assert sample(d, "llm_queue_depth", {"model": "m", "priority": "interactive"}) == 0
    holding.release()
    assert holding.instance.models["m"].in_flight == 0


async def test_a_model_loaded_nowhere_gets_a_drained_instance_after_its_patience() -> None:
    """Two instances, each busy with its own big model: the third model waits, then one
    instance is reserved for it, is no longer fed, and once drained loads it."""
    a = instance("a", "big-a", num_parallel=1, max_loaded=1)
    b = instance("b", "big-b", num_parallel=1, max_loaded=1)
    d = dispatcher(a, b, patience=20)
    hold_a = await d.acquire(ticket("big-a"))
    hold_b = await d.acquire(ticket("big-b"))
    third = asyncio.ensure_future(d.acquire(ticket("third", deadline=60)))
    await settle()
    clock_of(d).advance(19.9)
    assert not any(i.reserved_for for i in (a, b))  # not yet patient enough
    clock_of(d).advance(5.0)  # looked at every quarter of its patience: at 20 s
    reserved = [i for i in (a, b) if i.reserved_for == "third"]
    assert len(reserved) == 1
    victim = reserved[0]
    # New work for the victim's own model no longer goes there: it queues.
    own = "big-a" if victim is a else "big-b"
    more = asyncio.ensure_future(d.acquire(ticket(own)))
    await settle()
    assert not more.done()
    (hold_a if victim is a else hold_b).release()
    grant: Grant = await asyncio.wait_for(third, 5)
    assert (grant.instance, grant.loads) == (victim, True)
    assert victim.reserved_for is None
    assert (
        sample(d, "llm_model_loads_total", {"ollama_instance": victim.name, "model": "third"}) == 1
    )
    grant.release()
    (hold_b if victim is a else hold_a).release()
    more.cancel()


async def test_a_failed_instance_is_down_until_polled_and_others_are_used() -> None:
    a, b = instance("a", "m"), instance("b", "m")
    d = dispatcher(a, b)
    grant = await d.acquire(ticket())
    failed = grant.instance
    grant.release("down")
    assert not failed.up
    other = await d.acquire(ticket())
    assert other.instance is not failed
    other.release()


async def test_a_retry_never_goes_back_to_the_instance_that_failed_it() -> None:
    a, b = busy(instance("a", "m"), "m", 1), instance("b", "m")
    d = dispatcher(a, b)
    preferred = await d.acquire(ticket())
    assert preferred.instance is b  # fewest in flight
    preferred.release("busy")
    grant = await asyncio.wait_for(d.acquire(ticket(), exclude=frozenset({"b"})), 5)
    assert grant.instance is a
    assert b.up  # "busy" (Ollama's 503) is not "down"
    grant.release()


async def test_a_retry_after_its_instance_went_down_is_refused_as_instance_lost() -> None:
    """Its instance went down before the first byte and the other cannot start it in
    time: the client is told what happened (and W6 counts it as cut), not that the
    server is busy; an ordinary arrival in the same state is `overloaded`."""
    d = dispatcher(instance("a", "m", num_parallel=1), instance("b", "m", num_parallel=1))
    d.stats("m").service = 100.0  # the remaining slot is held ~100 s: past 30 s
    holding = await d.acquire(ticket())
    cut = await d.acquire(ticket())
    gone = cut.instance
    cut.release("down")
    with pytest.raises(Shed) as shed:
        await d.acquire(ticket(), exclude=frozenset({gone.name}), lost=True)
    assert shed.value.reason == "instance_lost"
    assert "went down before its first token" in shed.value.message
    labels = {"priority": "interactive"}
    assert sample(d, "llm_shed_total", {"reason": "instance_lost", **labels}) == 1
    with pytest.raises(Shed) as busy_now:
        await d.acquire(ticket())
    assert busy_now.value.reason == "overloaded"
    holding.release()


async def test_a_queued_request_overtaken_past_its_deadline_is_shed_then() -> None:
    """Admitted on one estimate, then overtaken by interactive requests: it is told as
    soon as it can no longer start in time, not when its deadline has passed."""
    d = dispatcher(instance("a", "m", num_parallel=1))
    t0 = d.clock.now()
    stats = d.stats("m")
    stats.service = 10.0
    # Interactive requests have come one per 100 s: they take about a tenth of the slot.
    stats.classes[INTERACTIVE] = steady_arrivals(0.01, t0)
    holding = await d.acquire(ticket())
    batch = asyncio.ensure_future(d.acquire(ticket(priority=BATCH, key="b", deadline=15)))
    await settle()
    assert not batch.done()  # nothing ahead of it: about 11 s (x 1.25), within 15
    # Three interactive requests go before it: about 34 s, past twice what it has left.
    humans = [asyncio.ensure_future(d.acquire(ticket(key=f"h{i}", deadline=60))) for i in (1, 2, 3)]
    await settle()
    assert not batch.done()
    clock_of(d).advance(0.15)
    d.pump()  # a release, an arrival or a poll looks at the queue again
    with pytest.raises(Shed) as shed:
        await asyncio.wait_for(batch, 5)
    assert d.clock.now() == t0 + 0.15  # told at once, 14.85 s before its deadline
    assert shed.value.reason == "overloaded"
    # The window now holds 16 of the old arrivals and the 4 new ones: 19 gaps over 1500.15 s.
    assert shed.value.retry_after == pytest.approx(3 / (0.1 - 19 / 1500.15))
    assert sample(d, "llm_shed_total", {"reason": "overloaded", "priority": "batch"}) == 1
    assert len(d.queue) == 3
    holding.release()
    for task in humans:
        (await task).release()


async def test_higher_classes_outrunning_the_slots_shed_a_batch_request_cleanly() -> None:
    """When interactive requests alone arrive faster than the slots drain, a batch
    request's wait is unbounded: it is shed with a bounded Retry-After, not a crash."""
    d = dispatcher(instance("a", "m", num_parallel=1))
    d.stats("m").service = 10.0
    stats = d.stats("m")
    # 1/s interactive against 0.1/s of capacity.
    stats.classes[INTERACTIVE] = steady_arrivals(1.0, d.clock.now())
    holding = await d.acquire(ticket())
    with pytest.raises(Shed) as shed:
        await d.acquire(ticket(priority=BATCH, key="b", deadline=60))
    assert shed.value.reason == "overloaded"
    assert shed.value.retry_after == 600
    assert "indefinitely" in shed.value.message
    holding.release()


async def test_a_flooding_keys_request_is_shed_at_arrival_when_others_will_overtake_it() -> None:
    """Fair share: a steady key sending 40% of capacity keeps overtaking a flooding key's
    backlog, so the flood's request is refused at once rather than queued to time out."""
    d = dispatcher(instance("a", "m", num_parallel=1))
    stats = d.stats("m")
    stats.service = 10.0  # 0.1 requests/s
    t = d.clock.now()
    steady = stats.keys[(INTERACTIVE, "steady")] = steady_arrivals(0.04, t)
    assert steady.rate(t) == pytest.approx(0.04)
    holding = await d.acquire(ticket(key="flood"))
    backlog = [asyncio.ensure_future(d.acquire(ticket(key="flood", deadline=60))) for _ in range(2)]
    await settle()
    # Two of its own ahead: (2 + 1) / (0.1 - 0.04) = 50 s (x 1.25 > 60 s). Position alone
    # (2 / 0.1 = 20 s) would have admitted it.
    with pytest.raises(Shed) as shed:
        await d.acquire(ticket(key="flood", deadline=60))
    assert d.clock.now() == t  # refused at arrival, not after a wait
    assert shed.value.retry_after == pytest.approx(50)
    # The steady key itself starts near the front: admitted.
    own = asyncio.ensure_future(d.acquire(ticket(key="steady", deadline=60)))
    await settle()
    assert not own.done()
    holding.release()
    assert (await asyncio.wait_for(own, 5)).instance.name == "a"
    for task in backlog:
        task.cancel()


def test_a_burst_of_arrivals_barely_moves_the_rate() -> None:
    """Poisson arrivals bunch up: three within a second, in a stream of one per 5 s,
    must not read as the rate tripling (a lower class's estimated wait subtracts this
    rate from the drain, and would jump past its deadline)."""
    t = 1000.0
    arrivals = steady_arrivals(0.2, t)
    assert arrivals.rate(t) == pytest.approx(0.2)
    for offset in (0.3, 0.6, 0.9):
        arrivals.note(t + offset)
    assert 0.2 < arrivals.rate(t + 0.9) < 0.2 * 1.3


def test_a_stream_that_stops_fades_then_reads_as_none() -> None:
    t = 1000.0
    arrivals = steady_arrivals(1.0, t)
    assert arrivals.rate(t + 5) < arrivals.rate(t + 1) < arrivals.rate(t)
    assert arrivals.rate(t + 11) == 0.0  # quiet for ten of its gaps
    assert Arrivals().rate(t) == 0.0
    one = Arrivals()
    one.note(t)
    assert one.rate(t + 1) == 0.0  # one arrival says nothing of a rate


async def test_an_instance_lost_is_seen_at_once_by_the_estimates() -> None:
    """Two instances, each holding one big model; b's connection fails. A request for
    big-b, now held nowhere, waits its load patience, its load and the surviving
    instance's time only in turns with big-a: refused at arrival, not after its
    deadline has nearly passed."""
    a = instance("a", "big-a", num_parallel=1, vram_gb=24, sizes={"big-a": 16})
    b = instance("b", "big-b", num_parallel=1, vram_gb=24, sizes={"big-b": 16})
    d = dispatcher(a, b, patience=20)
    on_a = await d.acquire(ticket("big-a", deadline=60))
    on_b = await d.acquire(ticket("big-b", deadline=60))
    queued = asyncio.ensure_future(d.acquire(ticket("big-b", key="j", deadline=300)))
    await settle()
    # Measured: big-a holds its slot 6 s, 0.1/s; big-b 5 s, 0.08/s; the last arrivals of
    # each one gap ago, so both read 0.95 of that now: 0.57 and 0.38 of a slot.
    now = d.clock.now()
    for model, service, rate in (("big-a", 6.0, 0.1), ("big-b", 5.0, 0.08)):
        stats = d.stats(model)
        stats.service, stats.load, stats.size = service, 8.0, 16 * GB
        stats.classes[INTERACTIVE] = steady_arrivals(rate, now - 1 / rate)
    # With b up: 1 ahead over 1 slot of 5 s: 5 s (the fair share, 1 / 0.2, says the same).
    probe = ticket("big-b", key="p").waiter(
        now, asyncio.get_running_loop().create_future(), frozenset(), affinity=False
    )
    assert d.estimate_wait(probe) == pytest.approx(5)
    on_b.release("down")  # the connection failed: b is down at once
    assert not b.up
    # Now: 20 s patience + 8 s load + 1 ahead / (0.38 / 0.95 of a slot, used 20 / 28 of
    # the time, each turn starting with an 8 s load / 5 s) = 45.5 s.
    assert d.estimate_wait(probe) == pytest.approx(45.5)
    with pytest.raises(Shed) as shed:
        await d.acquire(ticket("big-b", key="p", deadline=40))
    assert d.clock.now() == now  # refused on arrival
    # Its own arrival counted (big-b at 0.08/s again, 0.4 of a slot, big-a at 0.57 as
    # its last arrival is 10 s old): 28 + 1 / (0.4 / 0.97 x 20 / 28 / 5) = 44.975 s.
    assert shed.value.estimate == pytest.approx(44.975)
    # And big-a, which now takes turns with big-b on a, keeps its share of its slot.
    assert d.waits.capacity("big-a").slots == pytest.approx(0.57 / 0.97 * 20 / 28)
    assert d.waits.capacity("big-a").delay == 28  # big-b's turn, then its own reload
    queued.cancel()
    on_a.release()


async def test_a_reservation_nobody_waits_for_any_more_is_released() -> None:
    """The model an instance was reserved for lost its last waiter (shed, or gone):
    the instance takes other models' requests again at once."""
    a = instance("a", "big-a", num_parallel=1, max_loaded=1)
    b = instance("b", "big-b", num_parallel=1, max_loaded=1)
    d = dispatcher(a, b, patience=20)
    hold_a = await d.acquire(ticket("big-a"))
    hold_b = await d.acquire(ticket("big-b"))
    third = asyncio.ensure_future(d.acquire(ticket("third", deadline=60)))
    await settle()
    clock_of(d).advance(25.0)
    victim = next(i for i in (a, b) if i.reserved_for == "third")
    third.cancel()  # its only request goes away
    await settle()
    assert victim.reserved_for == "third"  # nothing looked yet
    (hold_a if victim is a else hold_b).release()  # the next pump looks
    assert victim.reserved_for is None
    own = "big-a" if victim is a else "big-b"
    grant = await asyncio.wait_for(d.acquire(ticket(own)), 5)
    assert grant.instance is victim
    grant.release()
    (hold_b if victim is a else hold_a).release()
