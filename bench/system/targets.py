"""The routing's targets, checked against the runs: PASS, FAIL, or n/a (not run).

Each check states its numbers. A TTFT percentile that fell on a request with no first
token reads "> 180 s"; where least-conn's is such a value it is taken as 180 s, the
least it can be, so the check is never easier than the truth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bench.system.summary import SHED_FAST_MS, Baseline, KeyStats, RunSummary


@dataclass(frozen=True)
class Verdict:
    workload: str
    mode: str
    target: str
    passed: bool | None  # None: could not be checked (a run is missing)
    numbers: str

    @property
    def label(self) -> str:
        return "n/a" if self.passed is None else "PASS" if self.passed else "FAIL"


def seconds(value: float | None, cap: float | None = None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return f"> {cap:g} s" if cap else "never"
    return f"{value:.2f} s"


def _key(run: RunSummary, name: str) -> KeyStats | None:
    return next((k for k in run.keys if k.key == name), None)


def _censored(value: float | None, cap: float) -> float | None:
    return None if value is None else min(value, cap)


def check_w1(
    runs: Mapping[str, RunSummary], mode: str, baseline_mode: str, cap: float
) -> list[Verdict]:
    ma, lc = runs.get(mode), runs.get(baseline_mode)
    if ma is None or lc is None:
        return [Verdict("W1", mode, "p95 TTFT <= 1/3 of least-conn's; loads <= 1/5", None, "")]
    lc_p95 = _censored(lc.ttft_p95, cap)
    ma_p95 = ma.ttft_p95
    ttft_ok = lc_p95 is not None and ma_p95 is not None and ma_p95 <= lc_p95 / 3
    loads_ok = ma.loads <= lc.loads / 5
    return [
        Verdict(
            "W1", mode, "p95 TTFT <= 1/3 of least-conn's", ttft_ok,
            f"{seconds(ma_p95, cap)} vs {seconds(lc.ttft_p95, cap)} "
            f"(bound {seconds(None if lc_p95 is None else lc_p95 / 3)})",
        ),
        Verdict(
            "W1", mode, "model loads <= 1/5 of least-conn's", loads_ok,
            f"{ma.loads} vs {lc.loads} (bound {lc.loads / 5:g})",
        ),
    ]  # fmt: skip


def check_w2(mode: str, run: RunSummary | None, base: Baseline | None, cap: float) -> list[Verdict]:
    if run is None or base is None:
        return [Verdict("W2", mode, "overload targets", None, "")]
    bound = base.bound
    interactive = _key(run, "interactive")
    p95 = interactive.ttft_p95 if interactive else None
    ttft_ok = bound is not None and p95 is not None and p95 <= bound
    shed_ok = run.shed_without_retry_after == 0 and (
        run.shed == 0 or (run.shed_max_ms is not None and run.shed_max_ms <= SHED_FAST_MS)
    )
    leaks = run.ollama_503 + run.timeouts
    return [
        Verdict(
            "W2", mode, "admitted interactive p95 TTFT <= unloaded p95 + 2 x median generation",
            ttft_ok,
            f"{seconds(p95, cap)} vs bound {seconds(bound)} (unloaded p95 "
            f"{seconds(base.ttft_p95)}, median generation {seconds(base.generation_p50)})",
        ),
        Verdict(
            "W2", mode, f"every shed answered within {SHED_FAST_MS:g} ms with Retry-After",
            shed_ok,
            f"{run.shed} shed, max {_ms(run.shed_max_ms)}, p95 {_ms(run.shed_p95_ms)}, "
            f"{run.shed_without_retry_after} without Retry-After",
        ),
        Verdict(
            "W2", mode, "no Ollama-side 503 or timeout reaches a client", leaks == 0,
            f"{run.ollama_503} Ollama 503s, {run.timeouts} timeouts",
        ),
    ]  # fmt: skip


def check_w3(mode: str, run: RunSummary | None, base: Baseline | None, cap: float) -> list[Verdict]:
    if run is None:
        return [Verdict("W3", mode, "flooding-key targets", None, "")]
    steady, flood = _key(run, "steady"), _key(run, "flood")
    bound = base.bound if base else None
    served = steady is not None and steady.completed == steady.sent
    p95 = steady.ttft_p95 if steady else None
    ttft_ok: bool | None = None
    if bound is not None:
        ttft_ok = p95 is not None and p95 <= bound
    shed_steady = steady.shed if steady else 0
    shed_flood = flood.shed if flood else 0
    return [
        Verdict(
            "W3", mode, "every request of the steady key is served", served,
            f"{steady.completed if steady else 0}/{steady.sent if steady else 0} completed",
        ),
        Verdict(
            "W3", mode, "steady key p95 TTFT within the W2 bound", ttft_ok,
            f"{seconds(p95, cap)} vs bound {seconds(bound)}",
        ),
        Verdict(
            "W3", mode, "the flooding key takes all the shedding", shed_steady == 0,
            f"steady shed {shed_steady}, flood shed {shed_flood}",
        ),
    ]  # fmt: skip


def check_w4(mode: str, run: RunSummary | None) -> list[Verdict]:
    if run is None:
        return [Verdict("W4", mode, "no reload caused by num_ctx", None, "")]
    return [
        Verdict(
            "W4", mode, "no reload caused by num_ctx", run.reloads == 0,
            f"{run.reloads} reloads (emulators' reload counter), {run.loads} loads",
        )
    ]  # fmt: skip


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


# The modes whose targets are checked: the model-aware ones, then least-conn's.
MODES = ("model-aware", "model-aware x2", "model-aware x2 shared", "least-conn")


def evaluate(
    runs: Mapping[tuple[str, str], RunSummary],
    baselines: Mapping[tuple[str, str], Baseline],
    cap: float,
    modes: tuple[str, ...] = MODES,
) -> list[Verdict]:
    """Every target for each of `modes` that ran (the targets are model-aware's; the
    two-replica and least-conn runs are checked the same way for comparison)."""
    w1 = {mode: run for (workload, mode), run in runs.items() if workload == "W1"}
    verdicts = []
    for mode in MODES[:3]:
        if mode == "model-aware" or mode in w1:
            verdicts += check_w1(w1, mode, "least-conn", cap)
    for mode in modes:
        # Model-aware's targets are listed even when not run (n/a); the others' only
        # for the workloads they ran.
        def wanted(workload: str, mode: str = mode) -> bool:
            return mode == "model-aware" or (workload, mode) in runs

        base = baselines.get(("W2", mode))
        if wanted("W2"):
            verdicts += check_w2(mode, runs.get(("W2", mode)), base, cap)
        if wanted("W3"):
            verdicts += check_w3(mode, runs.get(("W3", mode)), base, cap)
        if wanted("W4"):
            verdicts += check_w4(mode, runs.get(("W4", mode)))
    return verdicts
