"""The load over time with the operations marked (matplotlib, Agg).

Top: requests that ended each second, by outcome (complete, cut, failed). Bottom: each
request's time to first token at the moment it started. Planned operations are shaded
green, naive ones red.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from bench.rollout.load import Sample
from bench.rollout.operations import Operation

BIN = 1.0
OUTCOMES = (("ok", "tab:blue", "complete"), ("cut", "tab:red", "cut"),
            ("failed", "black", "failed"))  # fmt: skip
SHADES = {"planned": "tab:green", "naive": "tab:red"}


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_second(samples: Sequence[Sample], outcome: str, width: float = BIN) -> list[int]:
    """How many requests with `outcome` ended in each `width`-second bin."""
    if not samples:
        return []
    bins = [0] * (int(max(s.ended for s in samples) / width) + 1)
    for s in samples:
        if s.outcome == outcome:
            bins[int(s.ended / width)] += 1
    return bins


def plot(samples: Sequence[Sample], operations: Sequence[Operation], path: Path) -> None:
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 7), sharex=True)
    bottom_of = [0] * len(per_second(samples, "ok"))
    for outcome, colour, label in OUTCOMES:
        counts = per_second(samples, outcome)
        total = sum(counts)
        xs = [i * BIN for i in range(len(counts))]
        top.bar(xs, counts, width=BIN, bottom=bottom_of[: len(counts)], align="edge",
                color=colour, label=f"{label} ({total})")  # fmt: skip
        bottom_of = [a + b for a, b in zip(bottom_of, counts, strict=False)]
    ttft = [(s.started, s.ttft) for s in samples if s.ttft is not None]
    bottom.scatter([t for t, _ in ttft], [v * 1000 for _, v in ttft], s=6, color="tab:blue")
    peak = max(bottom_of, default=1)
    for index, op in enumerate(operations):
        for ax in (top, bottom):
            ax.axvspan(op.started, max(op.ended, op.started + 0.3), alpha=0.15,
                       color=SHADES[op.way])  # fmt: skip
        top.text(op.started, peak * (1.05 + 0.12 * (index % 2)), f"{op.target} {op.way}",
                 fontsize=7)  # fmt: skip
    top.set_ylim(0, peak * 1.35)
    top.set_ylabel("requests ended per second")
    top.legend(loc="upper right", fontsize=8)
    top.set_title("Day-two operations under steady streaming load (green: planned, red: naive)")
    bottom.set_ylabel("time to first token (ms)")
    bottom.set_xlabel("seconds since the load started")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
