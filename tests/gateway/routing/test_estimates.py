"""Wait estimates as pure functions of (stats, queue view, now): exact numbers."""

from __future__ import annotations

import asyncio
import math
from typing import cast

import pytest
from llm_gateway.routing.estimates import (
    Capacity,
    ModelStats,
    admits,
    overtaken,
    place_in_line,
    wait_estimate,
)
from llm_gateway.routing.fair_queue import FairQueue, Waiter
from llm_gateway.vocabulary import PRIORITIES

from tests.gateway.routing.test_dispatcher import steady_arrivals

INTERACTIVE, BATCH = PRIORITIES.index("interactive"), PRIORITIES.index("batch")
NOW = 1000.0


def waiter(key: str = "k", priority: int = INTERACTIVE, deadline: float = NOW + 60) -> Waiter:
    # The estimates never look at a waiter's future.
    return Waiter("m", key, priority, 1.0, NOW, deadline, cast("asyncio.Future[None]", None))


def test_nothing_measured_estimates_nothing_and_admits() -> None:
    assert wait_estimate(ModelStats(), Capacity(1, 1), waiter(), 5, 0, NOW) is None
    assert admits(None, 0.1)


def test_position_is_the_work_ahead_over_what_the_slots_drain() -> None:
    stats = ModelStats(service=10.0)  # 2 slots: 0.2 requests/s
    assert wait_estimate(stats, Capacity(2, 2), waiter(), 4, 0, NOW) == pytest.approx(20)
    # Two replicas share the slots: half the drain each.
    assert wait_estimate(stats, Capacity(2, 2, replicas=2), waiter(), 4, 0, NOW) == 40


def test_a_model_held_nowhere_waits_for_its_load_first() -> None:
    stats = ModelStats(service=10.0, load=7.0)
    assert wait_estimate(stats, Capacity(0, 1), waiter(), 1, 0, NOW) == pytest.approx(17)
    assert wait_estimate(ModelStats(service=10.0), Capacity(0, 1), waiter(), 1, 0, NOW) is None


def test_higher_classes_arriving_faster_than_the_drain_make_the_wait_unbounded() -> None:
    stats = ModelStats(service=10.0)
    stats.classes[INTERACTIVE] = steady_arrivals(1.0, NOW)
    assert wait_estimate(stats, Capacity(1, 1), waiter(priority=BATCH), 0, 0, NOW) == math.inf
    assert not admits(math.inf, 600)


def test_the_margin_on_admission() -> None:
    assert admits(8.0, 10.0)  # 8 x 1.25 = 10
    assert not admits(8.1, 10.0)


def test_place_in_line_counts_the_same_model_ahead_and_the_own_key() -> None:
    queue = FairQueue(10)
    first, other, mine = waiter("k"), waiter("j"), waiter("k")
    for w in (first, other, mine):
        queue.push(w)
    assert place_in_line(queue.waiters(), mine) == (2, 1)
    assert place_in_line(queue.waiters(), first) == (0, 0)


def test_overtaken_lists_only_the_clearly_hopeless() -> None:
    queue = FairQueue(10)
    soon, late = waiter("a", deadline=NOW + 100), waiter("b", deadline=NOW + 4)
    queue.push(soon)
    queue.push(late)

    def estimate(w: Waiter, ahead: int, own: int) -> float:
        return 10.0 * (ahead + 1)  # 10 s and 20 s

    # late: 20 s against 4 s left, more than twice over; soon: 10 s against 100 s.
    assert overtaken(queue.waiters(), estimate, NOW) == [(late, 20.0)]
    assert overtaken(queue.waiters(), estimate, NOW - 6) == []  # 20 <= 2 x 10
