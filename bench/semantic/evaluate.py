"""Similarities, guard verdicts, and the rates they give at a threshold.

A pair is scored once (its cosine similarity, and which guards refuse it); the rates
at any threshold follow from that, with the guards (the gateway's decision,
`llm_gateway.cache.semantic_match.judge`) or with the threshold alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from llm_gateway.cache import semantic_guards as guards
from llm_gateway.cache.semantic_match import cosine, judge

from bench.semantic.pairs import Pair

THRESHOLDS = tuple(round(0.70 + 0.01 * i, 2) for i in range(30))  # 0.70 .. 0.99


@dataclass(frozen=True)
class Scored:
    pair: Pair
    similarity: float
    refused_by: frozenset[str]  # every guard that refuses the pair


@dataclass(frozen=True)
class Rates:
    threshold: float
    guarded: bool
    false_hits: int
    near_misses: int
    hits: int
    paraphrases: int

    @property
    def false_hit_rate(self) -> float:
        return self.false_hits / self.near_misses if self.near_misses else 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.paraphrases if self.paraphrases else 0.0


@dataclass(frozen=True)
class GuardEffect:
    """At a threshold, among the pairs the threshold alone would serve: the near-misses
    this guard refuses (catches; `only`: refused by no other guard) and the paraphrases
    it refuses (costs)."""

    name: str
    catches: int
    only: int
    costs: int


@dataclass(frozen=True)
class Timing:
    features_us: float  # per text
    judge_us: float  # per pair, cosine + guards
    texts: int
    pairs: int


@dataclass
class Evaluation:
    scored: list[Scored]
    timing: Timing
    by_kind: dict[str, list[Scored]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in self.scored:
            self.by_kind.setdefault(s.pair.kind, []).append(s)

    def rates(self, threshold: float, guarded: bool = True) -> Rates:
        return rates_of(self.scored, threshold, guarded)

    def curve(self, guarded: bool) -> list[Rates]:
        return [self.rates(t, guarded) for t in THRESHOLDS]

    def effects(self, threshold: float) -> list[GuardEffect]:
        above = [s for s in self.scored if s.similarity >= threshold]
        effects = []
        for name in guards.GUARDS:
            misses = [s for s in above if not s.pair.paraphrase and name in s.refused_by]
            effects.append(
                GuardEffect(
                    name,
                    catches=len(misses),
                    only=sum(1 for s in misses if s.refused_by == {name}),
                    costs=sum(1 for s in above if s.pair.paraphrase and name in s.refused_by),
                )
            )
        return effects


def _served(s: Scored, threshold: float, guarded: bool) -> bool:
    return s.similarity >= threshold and (not guarded or not s.refused_by)


def rates_of(scored: Sequence[Scored], threshold: float, guarded: bool) -> Rates:
    paraphrases = [s for s in scored if s.pair.paraphrase]
    misses = [s for s in scored if not s.pair.paraphrase]
    return Rates(
        threshold=threshold,
        guarded=guarded,
        false_hits=sum(1 for s in misses if _served(s, threshold, guarded)),
        near_misses=len(misses),
        hits=sum(1 for s in paraphrases if _served(s, threshold, guarded)),
        paraphrases=len(paraphrases),
    )


def evaluate(pairs: Sequence[Pair], vectors: dict[str, list[float]]) -> Evaluation:
    texts = list(dict.fromkeys(t for p in pairs for t in (p.a, p.b)))
    started = time.perf_counter()
    feats = {t: guards.features(t) for t in texts}
    features_s = time.perf_counter() - started
    scored = []
    started = time.perf_counter()
    for p in pairs:
        # The gateway's own decision for the pair, timed as the gateway runs it.
        judge(cosine(vectors[p.a], vectors[p.b]), feats[p.a], feats[p.b])
    judge_s = time.perf_counter() - started
    for p in pairs:
        fa, fb = feats[p.a], feats[p.b]
        refused = frozenset(n for n, g in guards.GUARDS.items() if g(fa, fb))
        scored.append(Scored(p, cosine(vectors[p.a], vectors[p.b]), refused))
    timing = Timing(
        features_us=features_s / len(texts) * 1e6,
        judge_us=judge_s / len(pairs) * 1e6,
        texts=len(texts),
        pairs=len(pairs),
    )
    return Evaluation(scored, timing)
