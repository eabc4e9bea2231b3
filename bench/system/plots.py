"""PNG plots (matplotlib, Agg): TTFT CDFs per workload, per key, and model loads.

A CDF is over every admitted request; those without a first token never arrive, so a
curve that stops below 1 shows the share that timed out or failed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.system.loadgen import Outcome
from bench.system.summary import RunSummary

# Workloads whose targets use the W2 bound (drawn as a dashed line).
BOUNDED = ("W2", "W3")


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cdf(outcomes: Sequence[Outcome], scale: float) -> tuple[list[float], list[float]]:
    admitted = [o for o in outcomes if o.kind != "shed"]
    values = sorted(o.first_token * scale for o in admitted if o.first_token is not None)
    n = len(admitted)
    return values, [(i + 1) / n for i in range(len(values))]


def _axes(ax: Any, title: str, timeout: float, bound: float | None = None) -> None:
    ax.set_xscale("log")
    ax.set_xlim(0.01, timeout * 2)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("time to first token, simulated s (log)")
    ax.set_ylabel("share of admitted requests")
    ax.axvline(timeout, color="grey", linestyle=":", linewidth=1)
    if bound is not None and not math.isinf(bound):
        ax.axvline(bound, color="green", linestyle="--", linewidth=1, label="W2 bound")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")


def write_plots(
    directory: Path,
    outcomes: Mapping[tuple[str, str], Sequence[Outcome]],
    runs: Sequence[RunSummary],
    scale: float,
    timeout: float,
    bounds: Mapping[str, float | None],
) -> list[Path]:
    """Write every plot into `directory`; the paths written."""
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    workloads = sorted({w for w, _ in outcomes})
    for workload in workloads:
        modes = [m for w, m in outcomes if w == workload]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for mode in modes:
            xs, ys = _cdf(outcomes[(workload, mode)], scale)
            ax.step(xs, ys, where="post", label=mode)
        bound = bounds.get("model-aware") if workload in BOUNDED else None
        _axes(ax, f"{workload}: TTFT, all keys", timeout, bound)
        path = directory / f"ttft_cdf_{workload}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
        keys = sorted({o.key for m in modes for o in outcomes[(workload, m)]})
        if len(keys) > 1 and workload != "W1":
            fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4.2), squeeze=False)
            for ax, mode in zip(axes[0], modes, strict=True):
                for key in keys:
                    mine = [o for o in outcomes[(workload, mode)] if o.key == key]
                    xs, ys = _cdf(mine, scale)
                    ax.step(xs, ys, where="post", label=key)
                bound = bounds.get(mode) if workload in BOUNDED else None
                _axes(ax, f"{workload} {mode}: TTFT per key", timeout, bound)
            path = directory / f"ttft_per_key_{workload}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    if runs:
        fig, ax = plt.subplots(figsize=(8, 4))
        labels = [f"{r.workload}\n{r.mode}" for r in runs]
        ax.bar(range(len(runs)), [r.loads for r in runs], label="loads")
        ax.bar(range(len(runs)), [r.reloads for r in runs], label="of which reloads (num_ctx)")
        ax.set_xticks(range(len(runs)), labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("model loads (emulators' counters)")
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        path = directory / "model_loads.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
