"""PNG plots (matplotlib, Agg): TTFT CDFs per workload, per key, and model loads;
W5's follow-up TTFT, evaluated tokens and busy shares; W6's timeline.

A CDF is over every admitted request; those without a first token never arrive, so a
curve that stops below 1 shows the share that timed out or failed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.system.chatload import FIRST, FOLLOW_UP
from bench.system.chatstats import ChatStats
from bench.system.dropstats import DropStats
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
    chats: Sequence[ChatStats] = (),
    drops: Sequence[DropStats] = (),
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
    if chats:
        written += write_chat_plots(directory, outcomes, chats, scale, timeout)
    if drops:
        written += write_drop_plot(directory, outcomes, drops, scale, timeout)
    return written


def write_chat_plots(
    directory: Path,
    outcomes: Mapping[tuple[str, str], Sequence[Outcome]],
    chats: Sequence[ChatStats],
    scale: float,
    timeout: float,
) -> list[Path]:
    """W5: follow-up and first-turn TTFT CDFs per mode; evaluated tokens and busy shares."""
    plt = _pyplot()
    written: list[Path] = []
    modes = [s.mode for s in chats]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, stream, name in ((axes[0], FOLLOW_UP, "follow-up"), (axes[1], FIRST, "first")):
        for mode in modes:
            mine = [o for o in outcomes.get(("W5", mode), []) if o.stream == stream]
            if mine:
                xs, ys = _cdf(mine, scale)
                ax.step(xs, ys, where="post", label=mode)
        _axes(ax, f"W5: TTFT of {name} turns", timeout)
    path = directory / "w5_ttft.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    axes[0].bar(range(len(chats)), [s.evaluated for s in chats])
    axes[0].set_xticks(range(len(chats)), modes, fontsize=8, rotation=15)
    axes[0].set_ylabel("prompt tokens evaluated (not cached)")
    axes[0].grid(True, axis="y", alpha=0.3)
    width = 0.8 / max(len(chats), 1)
    for number, stats in enumerate(chats):
        xs = [i + number * width for i in range(len(stats.busy_share))]
        axes[1].bar(xs, stats.busy_share, width, label=stats.mode)
    axes[1].set_xlabel("instance")
    axes[1].set_ylabel("busy share of the run")
    axes[1].legend(fontsize=8)
    axes[1].grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path = directory / "w5_work.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def write_drop_plot(
    directory: Path,
    outcomes: Mapping[tuple[str, str], Sequence[Outcome]],
    drops: Sequence[DropStats],
    scale: float,
    timeout: float,
) -> list[Path]:
    """W6: each request's TTFT (or its wait for a 503) by arrival, the loss shaded."""
    plt = _pyplot()
    written: list[Path] = []
    for stats in drops:
        mine = outcomes.get(("W6", stats.mode), [])
        fig, ax = plt.subplots(figsize=(9, 4.5))
        served = [(o.sent * scale, o.first_token * scale) for o in mine if o.first_token]
        shed = [
            (o.sent * scale, ((o.ended or o.sent) - o.sent) * scale)
            for o in mine
            if o.kind == "shed"
        ]
        failed = [
            (o.sent * scale, ((o.ended or o.sent) - o.sent) * scale)
            for o in mine
            if o.kind not in ("shed", "completed")
        ]
        for points, label, marker in (
            (served, "TTFT", "."),
            (shed, "shed: wait for the 503", "x"),
            (failed, "failed: time to failure", "v"),
        ):
            if points:
                ax.scatter(*zip(*points, strict=True), s=8, marker=marker, label=label)
        ax.axvspan(stats.down_at, stats.back_at, color="red", alpha=0.08, label="instance down")
        ax.set_yscale("log")
        ax.set_ylim(0.01, timeout * 2)
        ax.set_xlabel("arrival, simulated s")
        ax.set_ylabel("simulated s (log)")
        ax.set_title(f"W6 {stats.mode}: an instance lost and back cold", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        path = directory / "w6_timeline.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
