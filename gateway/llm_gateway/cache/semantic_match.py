"""The semantic cache's one decision: is a stored question the request's question?

A candidate matches when the cosine similarity of the two last user messages'
embeddings reaches the threshold AND no guard (`semantic_guards`) refuses the pair.
The gateway's lookup and the evaluation (`python -m bench.semantic`) both call
`judge`, so what the evaluation measures is what the gateway does.

The default threshold, 0.85, is where the labelled set's near-misses stop hitting
(0 false hits with the guards) while most paraphrases still hit: see
docs/semantic-cache.md for the curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from llm_gateway.cache.semantic_guards import Features, refusal

DEFAULT_THRESHOLD = 0.85
# A candidate this far under the threshold, not refused by a guard, is a "near miss"
# in the metrics: what a slightly lower threshold would have served.
NEAR_MISS_BAND = 0.05


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b) or not a:
        return 0.0
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norm if norm else 0.0


@dataclass(frozen=True)
class Verdict:
    similarity: float
    refused_by: str | None  # the guard that refused, if any
    hit: bool

    def near_miss(self, threshold: float) -> bool:
        return not self.hit and threshold - NEAR_MISS_BAND <= self.similarity < threshold


def judge(
    similarity: float,
    request: Features,
    candidate: Features,
    threshold: float = DEFAULT_THRESHOLD,
    guards: tuple[str, ...] | None = None,
) -> Verdict:
    """`guards=()` turns the guards off (the evaluation's "threshold alone")."""
    refused = refusal(request, candidate, guards)
    return Verdict(similarity, refused, similarity >= threshold and refused is None)
