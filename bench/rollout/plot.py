"""The load over time with the operations marked (matplotlib, Agg): streams in flight,
and every failed request or cut stream as a mark at the moment it ended."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from bench.rollout.load import Sample
from bench.rollout.operations import Operation

STEP = 0.1


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def in_flight(samples: Sequence[Sample], step: float = STEP) -> tuple[list[float], list[int]]:
    """Requests open at each `step` of the run."""
    if not samples:
        return [], []
    end = max(s.ended for s in samples)
    times = [i * step for i in range(int(end / step) + 1)]
    counts = [sum(1 for s in samples if s.started <= t < s.ended) for t in times]
    return times, counts


def plot(samples: Sequence[Sample], operations: Sequence[Operation], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(13, 4.8))
    times, counts = in_flight(samples)
    ax.plot(times, counts, color="tab:blue", linewidth=1.0, label="requests in flight")
    colours = {"planned": "tab:green", "naive": "tab:red"}
    top = max(counts, default=1) + 2
    for index, op in enumerate(operations):
        ax.axvspan(op.started, max(op.ended, op.started + 0.2), alpha=0.18,
                   color=colours[op.way])  # fmt: skip
        label = f"{op.target}\n{op.way}"
        ax.text(op.started, top + (index % 2) * 1.6, label, fontsize=7, va="bottom")
    for outcome, marker, colour in (("cut", "x", "tab:red"), ("failed", "v", "black")):
        hits = [s.ended for s in samples if s.outcome == outcome]
        if hits:
            ax.scatter(hits, [0.3] * len(hits), marker=marker, color=colour, s=28,
                       label=f"{outcome} ({len(hits)})", zorder=3)  # fmt: skip
    ax.set_ylim(0, top + 4)
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("requests in flight")
    ax.set_title("Day-two operations under steady streaming load (green: planned, red: naive)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
