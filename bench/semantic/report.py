"""The evaluation as text: the printed summary, `results.md` and `results.json`."""

from __future__ import annotations

import json
import statistics
from typing import Any

from bench.semantic.evaluate import Evaluation, Rates


def _pct(n: int, of: int) -> str:
    return f"{n}/{of} ({100 * n / of:.1f}%)" if of else "0/0"


def summary(ev: Evaluation, threshold: float, source: str) -> str:
    guarded, alone = ev.rates(threshold, True), ev.rates(threshold, False)
    lines = [
        f"semantic cache evaluation: {guarded.paraphrases + guarded.near_misses} pairs "
        f"({guarded.paraphrases} paraphrases, {guarded.near_misses} near-misses), "
        f"embeddings: {source}",
        "",
        f"At threshold {threshold:.2f}:",
        "",
        "| decision | false hits (near-misses served) | hit rate (paraphrases served) |",
        "| --- | --- | --- |",
        f"| threshold + guards (the gateway) | {_pct(guarded.false_hits, guarded.near_misses)}"
        f" | {_pct(guarded.hits, guarded.paraphrases)} |",
        f"| threshold alone | {_pct(alone.false_hits, alone.near_misses)}"
        f" | {_pct(alone.hits, alone.paraphrases)} |",
        "",
        "By kind of pair (similarity of the two texts; served = would be answered from "
        "the other's entry):",
        "",
        "| kind | pairs | median sim. | max sim. | served, threshold alone | served, with guards |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, scored in sorted(ev.by_kind.items(), key=lambda kv: (kv[0] != "same", kv[0])):
        sims = [s.similarity for s in scored]
        alone_n = sum(1 for s in scored if s.similarity >= threshold)
        guarded_n = sum(1 for s in scored if s.similarity >= threshold and not s.refused_by)
        lines.append(
            f"| {kind} | {len(scored)} | {statistics.median(sims):.3f} | {max(sims):.3f} "
            f"| {alone_n} | {guarded_n} |"
        )
    lines += [
        "",
        f"What each guard does at {threshold:.2f}, among the pairs the threshold alone "
        "would serve (catches: near-misses it refuses, only: that no other guard refuses; "
        "costs: paraphrases it refuses):",
        "",
        "| guard | catches | only | costs |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {e.name} | {e.catches} | {e.only} | {e.costs} |" for e in ev.effects(threshold)]
    t = ev.timing
    lines += [
        "",
        f"Cost of the guards: {t.features_us:.0f} µs to read one text's features "
        f"(once per text; the gateway stores a candidate's), {t.judge_us:.0f} µs to "
        f"judge one pair (cosine of two 384-wide vectors + every guard), "
        f"over {t.texts} texts and {t.pairs} pairs.",
        "",
        "Near-misses served at this threshold, with guards:",
        "",
    ]
    served = [
        s
        for s in ev.scored
        if not s.pair.paraphrase and s.similarity >= threshold and not s.refused_by
    ]
    lines += [f"- {s.similarity:.3f} {s.pair.kind}: {s.pair.a} / {s.pair.b}" for s in served]
    lines += ["- none"] if not served else []
    lines += ["", "Paraphrases the guards refuse at this threshold:", ""]
    refused = [
        s for s in ev.scored if s.pair.paraphrase and s.similarity >= threshold and s.refused_by
    ]
    lines += [f"- {', '.join(sorted(s.refused_by))}: {s.pair.a} / {s.pair.b}" for s in refused] or [
        "- none"
    ]
    return "\n".join(lines)


def curve_table(ev: Evaluation) -> str:
    lines = [
        "| threshold | false hits, guards | hit rate, guards | false hits, alone "
        "| hit rate, alone |",
        "| --- | --- | --- | --- | --- |",
    ]
    for g, a in zip(ev.curve(True), ev.curve(False), strict=True):
        lines.append(
            f"| {g.threshold:.2f} | {100 * g.false_hit_rate:.1f}% | {100 * g.hit_rate:.1f}% "
            f"| {100 * a.false_hit_rate:.1f}% | {100 * a.hit_rate:.1f}% |"
        )
    return "\n".join(lines)


def _rates(r: Rates) -> dict[str, Any]:
    return {
        "threshold": r.threshold,
        "false_hits": r.false_hits,
        "near_misses": r.near_misses,
        "false_hit_rate": round(r.false_hit_rate, 4),
        "hits": r.hits,
        "paraphrases": r.paraphrases,
        "hit_rate": round(r.hit_rate, 4),
    }


def as_json(ev: Evaluation, threshold: float, source: str) -> str:
    doc = {
        "embeddings": source,
        "threshold": threshold,
        "guarded": _rates(ev.rates(threshold, True)),
        "threshold_alone": _rates(ev.rates(threshold, False)),
        "guards": [vars(e) for e in ev.effects(threshold)],
        "timing_us": {
            "features_per_text": ev.timing.features_us,
            "judge_per_pair": ev.timing.judge_us,
        },
        "curve": {
            "guarded": [_rates(r) for r in ev.curve(True)],
            "threshold_alone": [_rates(r) for r in ev.curve(False)],
        },
    }
    return json.dumps(doc, indent=1) + "\n"
