"""What the fair queue's burst credit buys a light key beside a flooding one.

W3 of `make bench-system` in miniature, on the gateway's own `FairQueue`: two slots
serving one model (5.4 s a request, as mistral-small:24b in the emulator), a flooding
key that always has requests queued, and a steady key sending Poisson arrivals at 40%
of capacity (0.148 requests/s) for 300 s. A freed slot takes the queue's best waiter,
as the dispatcher does. For each `burst` the same seeds are run; the figures are the
steady key's p95 wait to its slot (plus its 0.2 s prefill, as time to first token),
over the seeds, how many seeds put it over W3's bound (10.82 s: the unloaded p95 plus
two median generation times), and the share of the slots the steady key got. The queue
stays work-conserving at any credit: no slot is idle while a request waits, so what the
flooding key loses is exactly what the steady key gains.

    python -m bench.fair_burst [--seeds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from llm_gateway.routing.fair_queue import FairQueue, Waiter
from llm_gateway.vocabulary import PRIORITIES

SERVICE = 5.4  # simulated s per request on one slot
PREFILL = 0.2  # simulated s to the first token once it has a slot
SLOTS = 2
STEADY_RATE = 0.148  # requests/s: 40% of the two slots
DURATION = 300.0
FLOOD_QUEUED = 44  # what 120 s of queue deadline holds at this capacity
BOUND = 10.82  # W3's bound in the committed bench/system run
BURSTS: tuple[float, ...] = (0.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0)
INTERACTIVE = PRIORITIES.index("interactive")


@dataclass(frozen=True)
class Run:
    p95: float
    steady_share: float


def _waiter(loop: asyncio.AbstractEventLoop, key: str, at: float) -> Waiter:
    return Waiter("m", key, INTERACTIVE, 1.0, at, at + 1e9, loop.create_future())


def run(seed: int, burst: float, loop: asyncio.AbstractEventLoop) -> Run:
    """One seeded 300 s run: the steady key's p95 time to first token, its slot share."""
    rng = random.Random(seed)
    arrivals: list[float] = []
    at = rng.expovariate(STEADY_RATE)
    while at < DURATION:
        arrivals.append(at)
        at += rng.expovariate(STEADY_RATE)
    queue = FairQueue(10_000, burst=burst)
    for _ in range(FLOOD_QUEUED):
        queue.push(_waiter(loop, "flood", 0.0))
    frees = [0.0] * SLOTS  # both slots start with a flood request ending now
    heapq.heapify(frees)
    waits: list[float] = []
    served = {"flood": 0, "steady": 0}
    pending = list(reversed(arrivals))
    while pending or any(w.key == "steady" for w in queue.waiters()):
        free = frees[0]
        if pending and pending[-1] <= free:
            queue.push(_waiter(loop, "steady", pending.pop()))
            continue
        head = queue.best(["m"])
        assert head is not None  # the flooding key always waits
        queue.take(head)
        served[head.key] += 1
        if head.key == "steady":
            waits.append(free - head.enqueued_at + PREFILL)
        else:
            queue.push(_waiter(loop, "flood", free))  # it keeps its backlog
        heapq.heapreplace(frees, free + SERVICE)
    waits.sort()
    p95 = waits[round(0.95 * (len(waits) - 1))] if waits else 0.0
    return Run(p95, served["steady"] / max(sum(served.values()), 1))


def table(seeds: int, bursts: Sequence[float] = BURSTS) -> list[dict[str, float]]:
    loop = asyncio.new_event_loop()
    try:
        rows = []
        for burst in bursts:
            runs = [run(seed, burst, loop) for seed in range(seeds)]
            p95s = sorted(r.p95 for r in runs)
            rows.append(
                {
                    "burst": burst,
                    "p95_median": statistics.median(p95s),
                    "p95_p90": p95s[int(0.9 * (len(p95s) - 1))],
                    "over_bound": sum(p > BOUND for p in p95s) / len(p95s),
                    "steady_share": statistics.mean(r.steady_share for r in runs),
                }
            )
        return rows
    finally:
        loop.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"steady key beside a flooding one, 2 slots, {args.seeds} seeds of {DURATION:g} s")
    print(
        "| burst | steady p95 TTFT, median over seeds | 90th pct | seeds over "
        f"{BOUND} s | steady's share of the slots |"
    )
    print("|---|---|---|---|---|")
    for row in table(args.seeds):
        print(
            f"| {row['burst']:g} | {row['p95_median']:.1f} s | {row['p95_p90']:.1f} s | "
            f"{row['over_bound']:.0%} | {row['steady_share']:.1%} |"
        )


if __name__ == "__main__":
    main()
