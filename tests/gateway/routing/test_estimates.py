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
    contended,
    demand,
    overtaken,
    place_in_line,
    wait_estimate,
)
from llm_gateway.routing.fair_queue import FairQueue, Waiter
from llm_gateway.routing.instances import Instance, State
from llm_gateway.vocabulary import PRIORITIES

from tests.gateway.routing.conftest import GB, instance
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


# -- capacity lost: models taking turns on the instances left ---------------------


def two_big_models(b_up: bool = False) -> list[Instance]:
    """Two 24 GB instances, one 16 GB model on each (no room for both on one); `b` down."""
    a = instance("a", "big-a", num_parallel=1, vram_gb=24, sizes={"big-a": 16})
    b = instance("b", "big-b", num_parallel=1, vram_gb=24, sizes={"big-b": 16})
    b.up = b_up
    return [a, b]


def size_16(model: str) -> int:
    """big-a and big-b take 16 GB loaded; small 2 GB (it fits beside either)."""
    return 2 * GB if model == "small" else 16 * GB


DEMANDS = {"big-a": 0.6, "big-b": 0.4, "small": 0.05}


def test_a_model_whose_instance_is_lost_shares_the_one_left_by_demand() -> None:
    """big-b was held only on the lost instance: it waits its load patience and its
    load, then gets the surviving instance 0.4 / (0.4 + 0.6) of the time."""
    instances = two_big_models()
    stats = ModelStats(service=5.0, load=8.0)
    naive = Capacity.of(instances, "big-b")
    assert naive == Capacity(0, 1)
    # Before: a whole idle instance after the load: 8 + 2 / (1 / 5) = 18 s.
    assert wait_estimate(stats, naive, waiter(), 2, 0, NOW) == pytest.approx(18)
    shared = contended(naive, "big-b", instances, DEMANDS, size_16, patience=20)
    assert shared == Capacity(0, pytest.approx(0.4), delay=20)
    # Now: 20 patience + 8 load + 2 / (0.4 / 5) = 53 s.
    assert wait_estimate(stats, shared, waiter(), 2, 0, NOW) == pytest.approx(53)
    # Each turn on the instance starts with its 8 s load and lasts about the 20 s
    # patience: it uses 20 / 28 of its share.
    turns = contended(naive, "big-b", instances, DEMANDS, size_16, patience=20, load=8)
    assert turns.cold_slots == pytest.approx(0.4 * 20 / 28)
    # Once the instance is reserved for it, the patience is behind it.
    instances[0].reserved_for = "big-b"
    assert contended(naive, "big-b", instances, DEMANDS, size_16, 20).delay == 0


def test_the_model_it_displaces_keeps_only_its_share() -> None:
    instances = two_big_models()
    stats = ModelStats(service=6.0)
    naive = Capacity.of(instances, "big-a")
    assert naive.slots == 1
    shared = contended(naive, "big-a", instances, DEMANDS, size_16, patience=20)
    assert shared == Capacity(pytest.approx(0.6), 1, delay=20)
    # 2 ahead: the other's turn (20 s, its patience) then 2 / (0.6 / 6) = 20 s: 40 s,
    # not 2 / (1 / 6) = 12 s.
    assert wait_estimate(stats, shared, waiter(), 2, 0, NOW) == pytest.approx(40)
    # Its own reload counts too: 20 + 8, and its share used 20 / 28 of the time.
    reloads = contended(naive, "big-a", instances, DEMANDS, size_16, patience=20, load=8)
    assert reloads == Capacity(pytest.approx(0.6 * 20 / 28), 1, delay=28)
    # A model a load may have evicted from it (uncertain) is not counted as held there.
    instances[0].models["big-a"].state = State.UNCERTAIN
    assert instances[0].evicted_by("big-b", size_16("big-b")) == []


def test_nothing_changes_while_every_model_has_room() -> None:
    healthy = two_big_models(b_up=True)
    for model in ("big-a", "big-b"):
        naive = Capacity.of(healthy, model)
        assert contended(naive, model, healthy, DEMANDS, size_16, 20) is naive
    # A small model loaded nowhere that fits beside a big one takes nothing from it.
    instances = two_big_models()
    naive = Capacity.of(instances, "big-a")
    demands = {"big-a": 0.6, "small": 0.05}
    assert contended(naive, "big-a", instances, demands, size_16, 20) is naive
    # Nor does a lost model nobody asks for any more.
    assert contended(naive, "big-a", instances, {"big-a": 0.6, "big-b": 0.0}, size_16, 20) is naive


def test_demand_is_arrivals_times_service() -> None:
    stats = ModelStats(service=5.0)
    stats.classes[INTERACTIVE] = steady_arrivals(0.1, NOW)
    stats.classes[BATCH] = steady_arrivals(0.05, NOW)
    assert demand(stats, NOW) == pytest.approx(0.75)
