"""The numbers of one run, in simulated seconds (real x scale) unless named `_ms` (real).

TTFT is taken over every request the gateway admitted (all but its shed answers): one
that never got a token (a timeout, an Ollama 503, an error) counts as infinite, so a
percentile that lands on it reads "> 180 s" rather than hiding the failure. Goodput is
the tokens of completed requests over the run's span (arrivals window, or until the
last request ended if later).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.system.loadgen import LoadResult, Outcome
from bench.system.stack import Counters

INF = math.inf
# The bound on how fast a shed request is answered (real milliseconds).
SHED_FAST_MS = 100.0


def _seconds(text: str | None) -> float | None:
    """A Retry-After in seconds (None when absent or not a number)."""
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def hit_by_stall(outcome: Outcome, stalls: Sequence[tuple[float, float]]) -> bool:
    """Whether the generator stalled while `outcome` waited for its first token (or its
    answer): its measured times then include the stall."""
    start = outcome.sent
    end = start + outcome.first_token if outcome.first_token is not None else outcome.ended
    if end is None:
        return False
    return any(s < end and e > start for s, e in stalls)


def _ttfts(outcomes: Iterable[Outcome], scale: float) -> list[float]:
    return [
        INF if o.first_token is None else o.first_token * scale
        for o in outcomes
        if o.kind != "shed"
    ]


def _shed_ms(outcomes: Iterable[Outcome]) -> list[float]:
    return [((o.ended or o.sent) - o.sent) * 1000 for o in outcomes if o.kind == "shed"]


@dataclass
class KeyStats:
    key: str
    sent: int
    completed: int
    shed: int
    timeouts: int
    ollama_503: int
    errors: int
    ttft_p50: float | None
    ttft_p95: float | None
    shed_max_ms: float | None


def key_stats(key: str, outcomes: Sequence[Outcome], scale: float) -> KeyStats:
    ttfts = _ttfts(outcomes, scale)
    sheds = _shed_ms(outcomes)
    return KeyStats(
        key=key,
        sent=len(outcomes),
        completed=sum(o.kind == "completed" for o in outcomes),
        shed=len(sheds),
        timeouts=sum(o.kind == "timeout" for o in outcomes),
        ollama_503=sum(o.kind == "ollama_503" for o in outcomes),
        errors=sum(o.kind == "error" for o in outcomes),
        ttft_p50=percentile(ttfts, 50),
        ttft_p95=percentile(ttfts, 95),
        shed_max_ms=max(sheds, default=None),
    )


@dataclass
class RunSummary:
    workload: str
    mode: str
    offered_load: float  # of capacity
    duration: float  # simulated seconds of arrivals
    sent: int
    completed: int
    shed: int
    shed_without_retry_after: int
    shed_p50_ms: float | None
    shed_p95_ms: float | None
    shed_max_ms: float | None
    shed_slow: int  # answered later than SHED_FAST_MS
    # The gateways' count by reason: overloaded (at once, from the wait estimate),
    # queue_full (at once), deadline (after waiting the whole queue deadline).
    shed_reasons: dict[str, int]
    retry_after_p50: float | None  # seconds, as the gateway said (its real time)
    ollama_503: int  # reaching clients
    timeouts: int
    errors: int
    ttft_p50: float | None
    ttft_p95: float | None
    ttft_p99: float | None
    goodput: float  # completed tokens per simulated second
    span: float  # simulated seconds
    generation_p50: float | None  # first token to the end, completed requests
    loads: int
    reloads: int
    evictions: int
    ollama_rejected: int  # 503s the emulators answered (some retried before a client saw)
    aborted_loads: int
    keys: list[KeyStats] = field(default_factory=list)
    models: list[KeyStats] = field(default_factory=list)  # the same numbers by model
    loop_lag_p99_ms: float | None = None
    loop_lag_max_ms: float | None = None
    send_lag_p99_ms: float | None = None
    stalls: int = 0  # generator stalls (loop lag over loadgen.STALL_SECONDS)
    stalled_requests: int = 0  # requests whose wait spanned one
    ttft_p95_unstalled: float | None = None  # p95 TTFT without those requests
    generator_cpu: float = 0.0  # share of one core
    # Share of one core each part of the stack used, and the machine's busy share.
    cpu: dict[str, float] = field(default_factory=dict)
    error_details: list[str] = field(default_factory=list)
    # Exceptions in the gateways' logs (the last line of each traceback) and counts.
    gateway_exceptions: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: finite(v) for k, v in asdict(self).items()}


def finite(value: Any) -> Any:
    """JSON has no infinity: "inf" stands for a percentile that fell on a failure."""
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, list):
        return [finite(v) for v in value]
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value


def summarize(
    workload: str,
    mode: str,
    offered_load: float,
    duration: float,
    result: LoadResult,
    counters: Counters,
    scale: float,
    cpu: dict[str, float] | None = None,
    shed_reasons: dict[str, int] | None = None,
) -> RunSummary:
    outcomes = result.outcomes
    stalled = {id(o) for o in outcomes if hit_by_stall(o, result.stalls)}
    ttfts = _ttfts(outcomes, scale)
    sheds = _shed_ms(outcomes)
    completed = [o for o in outcomes if o.kind == "completed"]
    generation = [((o.ended or 0.0) - o.sent - (o.first_token or 0.0)) * scale for o in completed]
    span = max(duration, result.span * scale)
    keys = sorted({o.key for o in outcomes})
    details = sorted({f"{o.status}: {o.detail}" for o in outcomes if o.kind == "error"})
    return RunSummary(
        workload=workload,
        mode=mode,
        offered_load=offered_load,
        duration=duration,
        sent=len(outcomes),
        completed=len(completed),
        shed=len(sheds),
        shed_without_retry_after=sum(o.kind == "shed" and not o.retry_after for o in outcomes),
        shed_p50_ms=percentile(sheds, 50),
        shed_p95_ms=percentile(sheds, 95),
        shed_max_ms=max(sheds, default=None),
        shed_slow=sum(ms > SHED_FAST_MS for ms in sheds),
        shed_reasons=dict(shed_reasons or {}),
        retry_after_p50=percentile(
            [
                v
                for o in outcomes
                if o.kind == "shed" and (v := _seconds(o.retry_after)) is not None
            ],
            50,
        ),
        ollama_503=sum(o.kind == "ollama_503" for o in outcomes),
        timeouts=sum(o.kind == "timeout" for o in outcomes),
        errors=sum(o.kind == "error" for o in outcomes),
        ttft_p50=percentile(ttfts, 50),
        ttft_p95=percentile(ttfts, 95),
        ttft_p99=percentile(ttfts, 99),
        goodput=sum(o.tokens for o in completed) / span if span > 0 else 0.0,
        span=span,
        generation_p50=statistics.median(generation) if generation else None,
        loads=counters.loads,
        reloads=counters.reloads,
        evictions=counters.evictions,
        ollama_rejected=counters.rejected,
        aborted_loads=counters.aborted_loads,
        keys=[key_stats(k, [o for o in outcomes if o.key == k], scale) for k in keys],
        models=[
            key_stats(m, [o for o in outcomes if o.model == m], scale)
            for m in sorted({o.model for o in outcomes})
        ],
        loop_lag_p99_ms=percentile(result.loop_lag_ms, 99),
        loop_lag_max_ms=max(result.loop_lag_ms, default=None),
        send_lag_p99_ms=percentile(result.send_lag_ms, 99),
        stalls=len(result.stalls),
        stalled_requests=len(stalled),
        ttft_p95_unstalled=percentile(
            _ttfts([o for o in outcomes if id(o) not in stalled], scale), 95
        ),
        cpu=dict(cpu or {}),
        generator_cpu=result.cpu_seconds / result.span if result.span > 0 else 0.0,
        error_details=details[:10],
    )


@dataclass
class Baseline:
    """Unloaded: the same requests one at a time, the model loaded everywhere."""

    workload: str
    mode: str
    requests: int
    completed: int
    ttft_p50: float | None
    ttft_p95: float | None
    generation_p50: float | None

    @property
    def bound(self) -> float | None:
        """The issue's bound: unloaded p95 TTFT plus two median generation times."""
        if self.ttft_p95 is None or self.generation_p50 is None or math.isinf(self.ttft_p95):
            return None
        return self.ttft_p95 + 2 * self.generation_p50


def baseline(workload: str, mode: str, result: LoadResult, scale: float) -> Baseline:
    run = summarize(workload, mode, 0.0, 0.0, result, Counters(), scale)
    return Baseline(
        workload, mode, run.sent, run.completed, run.ttft_p50, run.ttft_p95, run.generation_p50
    )
