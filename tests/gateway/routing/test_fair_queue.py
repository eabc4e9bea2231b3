"""The admission queue: strict priority between classes, weighted fairness between keys."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from llm_gateway.routing.fair_queue import FairQueue, QueueFull, Waiter
from llm_gateway.vocabulary import PRIORITIES

INTERACTIVE, BATCH = PRIORITIES.index("interactive"), PRIORITIES.index("batch")
_clock = itertools.count()


def waiter(key: str, model: str = "m", priority: int = INTERACTIVE, weight: float = 1.0) -> Waiter:
    t = float(next(_clock))
    return Waiter(
        model, key, priority, weight, t, t + 100, asyncio.get_running_loop().create_future()
    )


def drain(queue: FairQueue, model: str = "m") -> list[str]:
    order = []
    while (head := queue.best([model])) is not None:
        queue.take(head)
        order.append(head.key)
    return order


async def test_one_key_is_served_in_arrival_order() -> None:
    queue = FairQueue(100)
    waiters = [waiter("a") for _ in range(5)]
    for w in waiters:
        queue.push(w)
    served = []
    while (head := queue.best(["m"])) is not None:
        queue.take(head)
        served.append(head)
    assert served == waiters


async def test_a_flooding_key_does_not_starve_a_steady_one() -> None:
    """Key `flood` queues 20 requests at once; `steady` then sends one: it goes next,
    not after the 20 (start-time fair queueing)."""
    queue = FairQueue(100)
    for _ in range(20):
        queue.push(waiter("flood"))
    queue.take(queue.best(["m"]))  # one of flood's is being served
    queue.push(waiter("steady"))
    assert queue.best(["m"]).key == "steady"


async def test_keys_alternate_when_both_have_a_backlog() -> None:
    queue = FairQueue(100)
    for _ in range(4):
        queue.push(waiter("a"))
    for _ in range(4):
        queue.push(waiter("b"))
    assert drain(queue) == ["a", "b"] * 4


async def test_weights_share_in_proportion() -> None:
    """Weight 3 against 1: three of the heavy key's requests per light one."""
    queue = FairQueue(100)
    for _ in range(9):
        queue.push(waiter("heavy", weight=3))
    for _ in range(3):
        queue.push(waiter("light", weight=1))
    first_eight = drain(queue)[:8]
    assert first_eight.count("heavy") == 6
    assert first_eight.count("light") == 2


async def test_a_higher_class_always_goes_first() -> None:
    queue = FairQueue(100)
    for _ in range(3):
        queue.push(waiter("batcher", priority=BATCH))
    queue.push(waiter("human", priority=INTERACTIVE))
    assert drain(queue) == ["human", "batcher", "batcher", "batcher"]


async def test_models_are_queued_apart_and_best_picks_across_them() -> None:
    queue = FairQueue(100)
    queue.push(waiter("a", model="x", priority=BATCH))
    queue.push(waiter("b", model="y", priority=INTERACTIVE))
    assert queue.best(["x"]).key == "a"
    assert queue.best(["x", "y"]).key == "b"
    assert queue.models() == ["x", "y"]
    assert (queue.depth("x"), queue.depth("y", INTERACTIVE), queue.depth("y", BATCH)) == (1, 1, 0)


async def test_removed_waiters_are_gone_and_counts_follow() -> None:
    queue = FairQueue(100)
    first, second, third = waiter("a"), waiter("b"), waiter("c")
    for w in (first, second, third):
        queue.push(w)
    queue.remove(second)
    queue.remove(second)  # twice is harmless
    assert len(queue) == 2
    assert queue.ahead_of(third) == 1
    assert drain(queue) == ["a", "c"]
    assert len(queue) == 0
    assert queue.models() == []


async def test_a_full_queue_refuses() -> None:
    queue = FairQueue(2)
    queue.push(waiter("a"))
    queue.push(waiter("a"))
    with pytest.raises(QueueFull):
        queue.push(waiter("a"))


async def test_ahead_counts_higher_classes_and_earlier_tags() -> None:
    queue = FairQueue(100)
    for _ in range(3):
        queue.push(waiter("flood", priority=BATCH))
    queue.push(waiter("human", priority=INTERACTIVE))
    late_batch = waiter("steady", priority=BATCH)
    queue.push(late_batch)
    # The interactive one and the first flood request (same start tag, earlier) go first.
    assert queue.ahead_of(late_batch) == 2


async def test_an_excluded_instance_passes_over_its_waiter() -> None:
    queue = FairQueue(100)
    retried = waiter("a")
    retried.exclude = frozenset({"gpu-1"})
    queue.push(retried)
    queue.push(waiter("b"))
    assert queue.best(["m"], instance="gpu-1").key == "b"
    assert queue.best(["m"], instance="gpu-2").key == "a"


async def test_many_departures_do_not_pile_up() -> None:
    queue = FairQueue(10_000)
    waiters = [waiter("a") for _ in range(500)]
    for w in waiters:
        queue.push(w)
    for w in waiters[:-1]:
        queue.remove(w)
    assert len(queue._heaps[("m", INTERACTIVE)]) < 100
    assert drain(queue) == ["a"]
