"""The semantic cache's evaluation, with the real all-MiniLM-L6-v2 on the labelled set.

The issue's target is checked here, not only printed: at the default threshold the
gateway's decision (threshold + guards) serves at most 1% of the near-misses, and the
threshold alone does not meet it (the guards are needed). The committed results
(bench/semantic/results.json) are the ones this run computes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from llm_gateway.cache.semantic_match import DEFAULT_THRESHOLD

from bench.semantic import embedder, pairs, report
from bench.semantic.evaluate import Evaluation, evaluate
from tests.support.emulator import Emulator

REPO = Path(__file__).resolve().parents[2]
NEAR_MISS_KINDS = {"negation", "number", "year", "size", "unit", "entity", "order", "versus"}


@pytest.fixture(scope="module")
def labelled() -> list[pairs.Pair]:
    return pairs.load()


@pytest.fixture(scope="module")
def evaluation(labelled: list[pairs.Pair]) -> Evaluation:
    vectors = embedder.embed_all(embedder.local(), (t for p in labelled for t in (p.a, p.b)))
    return evaluate(labelled, vectors)


def test_the_labelled_set_is_large_and_covers_every_kind(labelled: list[pairs.Pair]) -> None:
    kinds = Counter(p.kind for p in labelled)
    assert len(labelled) >= 200
    assert kinds[pairs.PARAPHRASE] >= 100
    assert all(kinds[k] >= 10 for k in NEAR_MISS_KINDS), kinds
    assert len({(p.a, p.b) for p in labelled}) == len(labelled)


def test_false_hits_at_most_one_percent_at_the_default_threshold(evaluation: Evaluation) -> None:
    guarded = evaluation.rates(DEFAULT_THRESHOLD, guarded=True)
    assert guarded.false_hit_rate <= 0.01
    # Reported beside it, and worth having: most paraphrases still hit.
    assert guarded.hit_rate >= 0.8


def test_the_threshold_alone_cannot_meet_the_target(evaluation: Evaluation) -> None:
    best = max(
        (r for r in evaluation.curve(guarded=False) if r.false_hit_rate <= 0.01),
        key=lambda r: r.hit_rate,
        default=None,
    )
    assert best is None or best.hit_rate < 0.2


def test_every_guard_catches_something_its_kind_needs(evaluation: Evaluation) -> None:
    effects = {e.name: e for e in evaluation.effects(DEFAULT_THRESHOLD)}
    for name in ("numbers", "negation", "direction", "comparison", "opposites"):
        assert effects[name].only > 0, name  # no other guard would have caught those
    # What the guards cost stays small beside what they catch.
    assert sum(e.costs for e in effects.values()) <= 10


def test_committed_results_are_this_runs(evaluation: Evaluation) -> None:
    committed = json.loads((REPO / "bench" / "semantic" / "results.json").read_text())
    fresh = json.loads(report.as_json(evaluation, DEFAULT_THRESHOLD, committed["embeddings"]))
    assert committed["threshold"] == DEFAULT_THRESHOLD
    for part in ("guarded", "threshold_alone", "guards", "curve"):
        assert committed[part] == fresh[part], part
    assert (REPO / "bench" / "semantic" / "curve.png").stat().st_size > 10_000


def test_the_summary_names_the_rates(evaluation: Evaluation) -> None:
    text = report.summary(evaluation, DEFAULT_THRESHOLD, "test")
    guarded = evaluation.rates(DEFAULT_THRESHOLD)
    assert f"{guarded.false_hits}/{guarded.near_misses}" in text
    assert f"{guarded.hits}/{guarded.paraphrases}" in text


def test_cli_through_the_emulators_embed_api(tmp_path: Path, emulator: Emulator) -> None:
    small = tmp_path / "pairs.tsv"
    small.write_text(
        "same\tHow do I exit vim?\tHow can I quit vim?\n"
        "order\tConvert this JSON to YAML.\tConvert this YAML to JSON.\n"
        "negation\tWhich plants need sun?\tWhich plants don't need sun?\n"
    )
    out = tmp_path / "out"
    runs = {}
    for name, extra in (("local", []), ("emulator", ["--ollama", emulator.url])):
        result = subprocess.run(
            [sys.executable, "-m", "bench.semantic", "--pairs", str(small), "--write",
             "--out", str(out / name), *extra],
            cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "0/2 (0.0%)" in result.stdout  # no near-miss served
        runs[name] = json.loads((out / name / "results.json").read_text())
        assert (out / name / "curve.png").is_file()
        assert (out / name / "results.md").read_text().startswith("# Semantic cache")
    # The emulator serves the same model: the same numbers through its /api/embed.
    assert runs["local"]["curve"] == runs["emulator"]["curve"]
