"""The manual clock the router's tests run on: still until advanced, timers in order."""

from __future__ import annotations

from llm_gateway.routing.clock import ManualClock


def test_timers_run_in_order_each_at_its_own_moment() -> None:
    clock = ManualClock(start=10.0)
    seen: list[tuple[str, float]] = []
    clock.call_at(13.0, lambda: seen.append(("b", clock.now())))
    clock.call_at(11.0, lambda: seen.append(("a", clock.now())))
    cancelled = clock.call_at(12.0, lambda: seen.append(("x", clock.now())))
    cancelled.cancel()
    clock.advance(2.5)
    assert seen == [("a", 11.0)]
    assert clock.now() == 12.5
    clock.advance(1)
    assert seen == [("a", 11.0), ("b", 13.0)]
    assert clock.pending == 0


def test_a_timer_set_by_a_timer_runs_in_the_same_advance_when_due() -> None:
    clock = ManualClock(start=0.0)
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(clock.now())
        clock.call_at(clock.now() + 1, tick)

    clock.call_at(1, tick)
    clock.advance(3.5)
    assert ticks == [1, 2, 3]


def test_wall_time_moves_with_it() -> None:
    clock = ManualClock(start=5.0, epoch=1_000.0)
    assert clock.wall() == 1_005.0
    clock.advance(2)
    assert clock.wall() == 1_007.0
