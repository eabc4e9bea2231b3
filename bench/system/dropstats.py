"""W6's numbers and targets: an instance lost under load, and back cold.

Phases by arrival (simulated seconds): steady (after a warm-up of WARM_UP s, until
the instance goes), down, and recovered (from RECOVERY s after it is back to the
end). Targets: no shed request waited more than 10% of the queue deadline for its
503; every admitted request completed, except those the instance was serving when it
went (cut: sent before it went, failed within CUT_WINDOW s after, including those
the gateway sent again and then refused because no other instance could start them in
time); the recovered p95
TTFT is within 2x the steady one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.system.loadgen import Outcome
from bench.system.summary import finite, percentile
from bench.system.targets import Verdict, seconds

NOTES = (
    "W1's traffic on the two GPUs; instance 1 is stopped (its process ends, its "
    "connections cut) a third of the way into the arrivals and started again, cold, at "
    "two thirds. Shed waits: simulated seconds from request to the gateway's 503. Cut: "
    "requests in flight on the instance when it went (those sent again elsewhere and "
    "refused there, no instance able to start them in time, included). TTFT p95 by "
    "arrival: steady (60 s to the loss), down, recovered (from 120 s after the return)."
)
WARM_UP = 60.0
RECOVERY = 120.0
CUT_WINDOW = 5.0
SHED_WAIT_SHARE = 0.1
# In the gateway's 503 for a request whose instance went down under it (`instance_lost`).
LOST_MARK = "went down before its first token"
RECOVERED_BOUND = 2.0


@dataclass
class DropStats:
    mode: str
    down_at: float
    back_at: float
    sent: int
    shed: int
    shed_wait_p95: float | None  # simulated seconds from request to 503
    shed_wait_max: float | None
    admitted: int
    completed: int
    cut: int  # in flight on the instance when it went
    failed: int  # admitted, not cut, not completed
    steady_p95: float | None
    down_p95: float | None
    recovered_p95: float | None

    def to_json(self) -> dict[str, Any]:
        return {k: finite(v) for k, v in asdict(self).items()}


def _p95(outcomes: Sequence[Outcome], scale: float) -> float | None:
    ttfts = [
        math.inf if o.first_token is None else o.first_token * scale
        for o in outcomes
        if o.kind != "shed"
    ]
    return percentile(ttfts, 95)


def drop_stats(
    mode: str, outcomes: Sequence[Outcome], scale: float, down_at: float, back_at: float
) -> DropStats:
    def at(o: Outcome) -> float:
        return o.sent * scale

    def ended(o: Outcome) -> float:
        return (o.ended if o.ended is not None else o.sent) * scale

    # A 503 for a request the lost instance was serving (sent again, and no other
    # instance could start it in time) answers a request that was admitted, not one
    # kept waiting to be refused: it is cut, whatever it waited before the loss.
    lost = [o for o in outcomes if o.kind == "shed" and LOST_MARK in o.detail]
    shed = [o for o in outcomes if o.kind == "shed" and o not in lost]
    waits = [ended(o) - at(o) for o in shed]
    admitted = [o for o in outcomes if o.kind != "shed" or o in lost]
    failed = [o for o in admitted if o.kind != "completed"]
    cut = [o for o in failed if at(o) < down_at <= ended(o) <= down_at + CUT_WINDOW]
    return DropStats(
        mode=mode,
        down_at=down_at,
        back_at=back_at,
        sent=len(outcomes),
        shed=len(shed),
        shed_wait_p95=percentile(waits, 95),
        shed_wait_max=max(waits, default=None),
        admitted=len(admitted),
        completed=len(admitted) - len(failed),
        cut=len(cut),
        failed=len(failed) - len(cut),
        steady_p95=_p95([o for o in outcomes if WARM_UP <= at(o) < down_at], scale),
        down_p95=_p95([o for o in outcomes if down_at <= at(o) < back_at], scale),
        recovered_p95=_p95([o for o in outcomes if at(o) >= back_at + RECOVERY], scale),
    )


def check_w6(stats: DropStats | None, deadline: float, mode: str = "model-aware") -> list[Verdict]:
    if stats is None:
        return [Verdict("W6", mode, "capacity-drop targets", None, "")]
    bound = SHED_WAIT_SHARE * deadline
    wait_ok = stats.shed_wait_max is None or stats.shed_wait_max <= bound
    steady, recovered = stats.steady_p95, stats.recovered_p95
    recovered_ok = (
        steady is not None
        and recovered is not None
        and not math.isinf(steady)
        and recovered <= RECOVERED_BOUND * steady
    )
    return [
        Verdict(
            "W6", mode,
            f"no request waits over {SHED_WAIT_SHARE:.0%} of its deadline to be refused",
            wait_ok,
            f"{stats.shed} shed, wait p95 {seconds(stats.shed_wait_p95)}, max "
            f"{seconds(stats.shed_wait_max)} (bound {seconds(bound)})",
        ),
        Verdict(
            "W6", mode, "every admitted request completes", stats.failed == 0,
            f"{stats.completed}/{stats.admitted} completed; {stats.cut} cut when the "
            f"instance went, {stats.failed} other failures",
        ),
        Verdict(
            "W6", mode, f"p95 TTFT {RECOVERY:g} s after the return <= {RECOVERED_BOUND:g}x steady",
            recovered_ok,
            f"{seconds(recovered)} vs steady {seconds(steady)} (while down "
            f"{seconds(stats.down_p95)})",
        ),
    ]  # fmt: skip


def markdown(stats: Sequence[DropStats]) -> str:
    lines = [
        "| mode | down / back at | sent | shed (wait p95 / max) | completed / admitted "
        "| cut | TTFT p95 steady / down / recovered |",
        "|" + "---|" * 7,
    ]
    for s in stats:
        lines.append(
            f"| {s.mode} | {s.down_at:g} / {s.back_at:g} s | {s.sent} "
            f"| {s.shed} ({seconds(s.shed_wait_p95)} / {seconds(s.shed_wait_max)}) "
            f"| {s.completed}/{s.admitted} | {s.cut} "
            f"| {seconds(s.steady_p95)} / {seconds(s.down_p95)} / {seconds(s.recovered_p95)} |"
        )
    return "\n".join(lines)
