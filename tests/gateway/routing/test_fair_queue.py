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


def backlogged(queue: FairQueue, key: str, queued: int, served: int) -> None:
    """`key` queues `queued` requests and `served` of them are dispatched: it runs
    ahead of the class's virtual time as a flooding key does."""
    for _ in range(queued):
        queue.push(waiter(key))
    for _ in range(served):
        queue.take(queue.best(["m"]))


@pytest.mark.parametrize(("burst", "steady_first"), [(0.0, 1), (12.0, 5)])
async def test_a_light_key_that_bursts_goes_first_on_its_credit(
    burst: float, steady_first: int
) -> None:
    """A key that sent nothing while a flooding key was served sends 5 requests at
    once. Plain SFQ (burst 0) gives it every other slot; with credit its 5 go first."""
    queue = FairQueue(100, burst=burst)
    backlogged(queue, "flood", queued=40, served=20)
    for _ in range(5):
        queue.push(waiter("steady"))
    order = drain(queue)
    assert order[:steady_first] == ["steady"] * steady_first
    assert order[steady_first] == "flood"
    assert order.count("steady") == 5


async def test_the_credit_is_bounded() -> None:
    """However long a key stayed quiet, it goes ahead of a backlogged key by `burst`
    requests more than plain SFQ's one (the request at the virtual time); then the two
    alternate."""
    queue = FairQueue(200, burst=4)
    backlogged(queue, "flood", queued=100, served=60)
    for _ in range(10):
        queue.push(waiter("steady"))
    order = drain(queue)
    assert order[:5] == ["steady"] * 5
    assert order[5:15] == ["flood", "steady"] * 5


async def test_credit_spent_is_earned_again_only_by_waiting() -> None:
    """A key that spent its credit does not jump the queue again at once: the next
    request it sends alternates with the backlogged key's."""
    queue = FairQueue(200, burst=3)
    backlogged(queue, "flood", queued=100, served=50)
    for _ in range(3):
        queue.push(waiter("steady"))
    assert drain_n(queue, 3) == ["steady"] * 3
    queue.push(waiter("steady"))
    queue.push(waiter("steady"))
    assert drain_n(queue, 4) == ["steady", "flood", "steady", "flood"]


async def test_the_credit_banked_is_reported_per_class_and_key() -> None:
    """/admin/queue shows it: a request sent spends one of the light key's credit, and
    the flooding key's service earns it back, up to the burst."""
    queue = FairQueue(200, burst=4)
    backlogged(queue, "flood", queued=60, served=20)
    queue.push(waiter("steady"))
    assert queue.best(["m"]).key == "steady"
    queue.take(queue.best(["m"]))
    credit = queue.credits()["interactive"]
    assert "flood" not in credit  # backlogged: at or past the virtual time
    assert credit["steady"] == 3
    for _ in range(10):
        queue.take(queue.best(["m"]))  # the flooding key is served meanwhile
    assert queue.credits()["interactive"]["steady"] == 4  # capped at the burst


async def test_without_a_flooding_key_credit_is_not_spent() -> None:
    """Keys that merely take turns (none with more requests waiting than the burst)
    are served in plain SFQ order: a key that was served less lately does not jump
    the other's few waiting requests (it would only lengthen that key's tail)."""
    queue = FairQueue(200, burst=12)
    backlogged(queue, "busy", queued=30, served=24)  # 6 left waiting: not a flood
    for _ in range(3):
        queue.push(waiter("quiet"))
    assert drain_n(queue, 4) == ["quiet", "busy", "quiet", "busy"]


async def test_a_backlogged_key_banks_no_credit() -> None:
    """The flooding key's own requests start at or after the virtual time: credit only
    helps a key that has been served less than the others."""
    queue = FairQueue(200, burst=12)
    backlogged(queue, "flood", queued=50, served=30)
    queue.push(late := waiter("flood"))
    assert late.start >= queue.best(["m"]).start


def drain_n(queue: FairQueue, n: int) -> list[str]:
    order = []
    for _ in range(n):
        head = queue.best(["m"])
        assert head is not None
        queue.take(head)
        order.append(head.key)
    return order
