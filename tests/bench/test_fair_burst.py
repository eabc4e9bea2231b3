"""`bench/fair_burst.py`: the burst credit's effect on its seeded model of W3."""

from __future__ import annotations

from bench.fair_burst import table


def test_credit_shortens_the_light_keys_tail_and_keeps_its_share() -> None:
    plain, credit = table(seeds=30, bursts=(0.0, 12.0))
    assert credit["p95_median"] < plain["p95_median"] / 2
    assert credit["over_bound"] < plain["over_bound"]
    # Work-conserving: the light key's share of the slots moves by under 2 points.
    assert abs(credit["steady_share"] - plain["steady_share"]) < 0.02
