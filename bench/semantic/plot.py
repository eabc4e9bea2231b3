"""`curve.png`: false-hit rate and hit rate over thresholds, with and without guards."""

from __future__ import annotations

from pathlib import Path

from bench.semantic.evaluate import Evaluation


def write_curve(ev: Evaluation, threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    guarded, alone = ev.curve(True), ev.curve(False)
    xs = [r.threshold for r in guarded]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot(xs, [100 * r.hit_rate for r in guarded], "g-", label="hit rate (paraphrases), guards")
    ax.plot(xs, [100 * r.hit_rate for r in alone], "g:", label="hit rate, threshold alone")
    misses = [100 * r.false_hit_rate for r in guarded]
    ax.plot(xs, misses, "r-", label="false hits (near-misses), guards")
    ax.plot(xs, [100 * r.false_hit_rate for r in alone], "r:", label="false hits, threshold alone")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--", label="1% target")
    ax.axvline(threshold, color="black", linewidth=0.8, label=f"default threshold {threshold:.2f}")
    ax.set_xlabel("cosine similarity threshold (all-MiniLM-L6-v2)")
    ax.set_ylabel("% of pairs served from the other's entry")
    ax.set_ylim(-2, 102)
    ax.set_title(f"Semantic cache on {len(ev.scored)} labelled pairs")
    ax.legend(fontsize=8, loc="center left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
