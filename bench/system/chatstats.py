"""W5's numbers and targets: what prefix affinity saves, against the ideal.

Per mode: TTFT of first turns and of follow-ups (simulated seconds; a turn that never
got a token counts as infinite), prompt tokens in total and evaluated (the emulators'
counters: the rest came from a slot's or the host's cache), and each instance's busy
share (simulated seconds its GPU computed over the run's span).

Targets (affinity against the ideal, where every follow-up goes to the instance
holding its prefix): follow-up TTFT p50 <= 1.25x and p95 <= 1.5x, prompt tokens
evaluated <= 1.2x, and no instance busier than 1.25x the mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.system.chatload import FIRST, FOLLOW_UP
from bench.system.loadgen import Outcome
from bench.system.stack import Counters
from bench.system.summary import finite, percentile
from bench.system.targets import Verdict, seconds

NOTES = (
    "Three instances of qwen2.5:32b at 70B-class speeds (800 prompt tokens/s, 15 tokens/s "
    "decoding), NUM_PARALLEL 2, num_ctx 8192, llama-server's slot caches and 8 GiB host "
    "prompt cache (emulated). Conversations of 6-10 turns on four shared system prompts "
    "(1,000-2,000 tokens), questions of 20-80 words, answers of 128 tokens, 10-40 s of "
    "think time; 65% of what the instances serve with every history cached. TTFT in "
    "simulated s; prompt tokens from the emulators' counters (evaluated: not found in a "
    "slot's or the host cache); busy share: time each instance's GPU computed over the "
    "run. The ideal sends every turn of a conversation to one instance (round robin over "
    "conversations), through a gateway of its own that passes everything to it, whatever "
    "the load."
)
AFFINITY = "model-aware + affinity"
IDEAL = "ideal (pinned)"
P50_BOUND, P95_BOUND, EVALUATED_BOUND, BUSY_BOUND = 1.25, 1.5, 1.2, 1.25


@dataclass
class ChatStats:
    mode: str
    conversations: int
    turns: int
    completed: int
    shed: int
    first_p50: float | None
    first_p95: float | None
    follow_p50: float | None
    follow_p95: float | None
    prompt_tokens: int
    evaluated: int
    evaluated_per_instance: list[int]
    busy_share: list[float]  # per instance, of the span

    @property
    def evaluated_share(self) -> float:
        return self.evaluated / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def busiest(self) -> float:
        """The busiest instance's busy time over the mean's."""
        mean = sum(self.busy_share) / len(self.busy_share) if self.busy_share else 0.0
        return max(self.busy_share) / mean if mean > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["evaluated_share"] = self.evaluated_share
        data["busiest_over_mean"] = self.busiest
        return {k: finite(v) for k, v in data.items()}


def _ttfts(outcomes: Sequence[Outcome], stream: int, scale: float) -> list[float]:
    return [
        math.inf if o.first_token is None else o.first_token * scale
        for o in outcomes
        if o.stream == stream and o.kind != "shed"
    ]


def chat_stats(
    mode: str, outcomes: Sequence[Outcome], counters: Counters, span: float, scale: float
) -> ChatStats:
    """`span`: simulated seconds the run lasted."""
    first, follow = _ttfts(outcomes, FIRST, scale), _ttfts(outcomes, FOLLOW_UP, scale)
    return ChatStats(
        mode=mode,
        conversations=len({o.conversation for o in outcomes}),
        turns=len(outcomes),
        completed=sum(o.kind == "completed" for o in outcomes),
        shed=sum(o.kind == "shed" for o in outcomes),
        first_p50=percentile(first, 50),
        first_p95=percentile(first, 95),
        follow_p50=percentile(follow, 50),
        follow_p95=percentile(follow, 95),
        prompt_tokens=counters.prompt_tokens,
        evaluated=counters.prompt_evaluated,
        evaluated_per_instance=list(counters.evaluated),
        busy_share=[b / span if span > 0 else 0.0 for b in counters.busy],
    )


def _ratio(value: float | None, ideal: float | None) -> float | None:
    if value is None or ideal is None or math.isinf(value) or ideal <= 0:
        return None
    return value / ideal


def check_w5(stats: Mapping[str, ChatStats], mode: str = AFFINITY) -> list[Verdict]:
    run, ideal = stats.get(mode), stats.get(IDEAL)
    if run is None or ideal is None:
        return [Verdict("W5", mode, "prefix affinity within bounds of the ideal", None, "")]
    p50 = _ratio(run.follow_p50, ideal.follow_p50)
    p95 = _ratio(run.follow_p95, ideal.follow_p95)
    evaluated = _ratio(run.evaluated, ideal.evaluated)
    return [
        Verdict(
            "W5", mode, f"follow-up TTFT p50 <= {P50_BOUND:g}x the ideal's",
            p50 is not None and p50 <= P50_BOUND,
            f"{seconds(run.follow_p50)} vs {seconds(ideal.follow_p50)} ({_x(p50)})",
        ),
        Verdict(
            "W5", mode, f"follow-up TTFT p95 <= {P95_BOUND:g}x the ideal's",
            p95 is not None and p95 <= P95_BOUND,
            f"{seconds(run.follow_p95)} vs {seconds(ideal.follow_p95)} ({_x(p95)})",
        ),
        Verdict(
            "W5", mode, f"prompt tokens evaluated <= {EVALUATED_BOUND:g}x the ideal's",
            evaluated is not None and evaluated <= EVALUATED_BOUND,
            f"{run.evaluated:,} vs {ideal.evaluated:,} ({_x(evaluated)})",
        ),
        Verdict(
            "W5", mode, f"no instance busier than {BUSY_BOUND:g}x the mean",
            run.busiest <= BUSY_BOUND,
            f"busiest {run.busiest:.2f}x (busy shares "
            f"{', '.join(f'{b:.0%}' for b in run.busy_share)})",
        ),
        Verdict(
            "W5", mode, "every turn served", run.completed == run.turns,
            f"{run.completed}/{run.turns} turns completed, {run.shed} shed",
        ),
    ]  # fmt: skip


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(stats: Sequence[ChatStats]) -> str:
    header = (
        "| mode | turns (convs) | first p50 | first p95 | follow-up p50 | follow-up p95 "
        "| prompt tokens | evaluated | busy share per instance | busiest / mean |"
    )
    lines = [header, "|" + "---|" * 10]
    for s in stats:
        lines.append(
            f"| {s.mode} | {s.completed}/{s.turns} ({s.conversations}) "
            f"| {seconds(s.first_p50)} | {seconds(s.first_p95)} "
            f"| {seconds(s.follow_p50)} | {seconds(s.follow_p95)} "
            f"| {s.prompt_tokens:,} | {s.evaluated:,} ({s.evaluated_share:.1%}) "
            f"| {' / '.join(f'{b:.0%}' for b in s.busy_share)} | {s.busiest:.2f}x |"
        )
    return "\n".join(lines)
