"""The results as Markdown tables (stdout and results.md) and a JSON dump of the numbers."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.system.summary import Baseline, RunSummary, finite
from bench.system.targets import Verdict, seconds
from bench.system.workloads import Workload

RUN_COLUMNS = [
    "workload",
    "mode",
    "load",
    "sent",
    "completed",
    "TTFT p50",
    "TTFT p95",
    "TTFT p99",
    "goodput tok/s",
    "model loads",
    "reloads",
    "Ollama 503s (emulators)",
    "Ollama 503s to clients",
    "timeouts",
    "errors",
    "shed",
    "shed p50 / p95 ms",
]
KEY_COLUMNS = [
    "workload",
    "mode",
    "key",
    "sent",
    "completed",
    "shed",
    "timeouts",
    "Ollama 503s",
    "TTFT p50",
    "TTFT p95",
]


@dataclass(frozen=True)
class ServiceCheck:
    model: str
    catalogue: float  # simulated seconds
    measured: float | None  # median of the probe's requests, simulated seconds
    requests: int


@dataclass(frozen=True)
class Setup:
    scale: float
    seed: int
    smoke: bool
    ttft_timeout: float  # simulated seconds
    notes: tuple[str, ...]
    load_average_start: tuple[float, float, float]
    load_average_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    real_seconds: float = 0.0


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def run_row(run: RunSummary, cap: float) -> list[str]:
    return [
        run.workload,
        run.mode,
        f"{run.offered_load:.0%}",
        str(run.sent),
        str(run.completed),
        seconds(run.ttft_p50, cap),
        seconds(run.ttft_p95, cap),
        seconds(run.ttft_p99, cap),
        f"{run.goodput:.1f}",
        str(run.loads),
        str(run.reloads),
        str(run.ollama_rejected),
        str(run.ollama_503),
        str(run.timeouts),
        str(run.errors),
        str(run.shed),
        f"{_ms(run.shed_p50_ms)} / {_ms(run.shed_p95_ms)}",
    ]


def key_rows(run: RunSummary, cap: float, by_model: bool = False) -> list[list[str]]:
    return [
        [
            run.workload,
            run.mode,
            k.key,
            str(k.sent),
            str(k.completed),
            str(k.shed),
            str(k.timeouts),
            str(k.ollama_503),
            seconds(k.ttft_p50, cap),
            seconds(k.ttft_p95, cap),
        ]
        for k in (run.models if by_model else run.keys)
    ]


def markdown(
    setup: Setup,
    workloads: Sequence[Workload],
    capacities: Mapping[str, float],
    service: Sequence[ServiceCheck],
    runs: Sequence[RunSummary],
    baselines: Sequence[Baseline],
    verdicts: Sequence[Verdict],
    sections: Sequence[str] = (),
) -> str:
    """The report; `sections` (Markdown lines) go before the targets."""
    cap = setup.ttft_timeout
    out = ["# System benchmark: least-conn vs model-aware routing", ""]
    if setup.smoke:
        out += ["**Smoke run**: tiny workloads, the numbers mean nothing.", ""]
    out += [
        f"Time scale {setup.scale:g} (the emulators run {setup.scale:g}x faster than real "
        f"time; every duration is simulated seconds = real x {setup.scale:g}, except the "
        f"shed latencies, in real ms). Seed {setup.seed}. Client timeout to first token "
        f"{cap:g} s. Took {setup.real_seconds:.0f} s real; load average "
        f"{_load(setup.load_average_start)} at the start, {_load(setup.load_average_end)} "
        "at the end (2 cores).",
        "",
        *[f"- {note}" for note in setup.notes],
        "",
        "## Workloads",
        "",
        table(
            ["workload", "what", "arrivals (simulated s)", "rate /s", "load", "streams"],
            [
                [
                    w.name,
                    w.title,
                    f"{w.duration:g}",
                    f"{w.rate:.3f}",
                    f"{w.load:.0%}",
                    "<br>".join(s.label for s in w.streams),
                ]
                for w in workloads
            ],
        ),
        "",
        "## Capacity",
        "",
        "Service time of one request (prompt + generation, alone on its GPU) from the "
        "emulator's catalogue, and measured by a few requests sent one at a time straight to "
        "one emulator:",
        "",
        table(
            ["model", "catalogue s", "measured s", "requests"],
            [
                [
                    s.model,
                    f"{s.catalogue:.2f}",
                    seconds(s.measured).removesuffix(" s"),
                    str(s.requests),
                ]
                for s in service
            ],
        ),
        "",
        *[f"- {name}: {value:.3f} requests/s" for name, value in capacities.items()],
        "",
        "## Results",
        "",
        "TTFT over every request the gateway admitted; one that never got a token counts as "
        f'infinite ("> {cap:g} s"). Goodput: tokens of completed requests per simulated '
        "second. Model loads, reloads and Ollama 503s from the emulators' scheduler counters "
        '(summed over instances); "to clients": what reached the load generator. Shed: the '
        "gateway's 503 + Retry-After, latency in real ms from request to answer.",
        "",
        table(RUN_COLUMNS, [run_row(r, cap) for r in runs]),
        "",
        "### Per key",
        "",
        table(KEY_COLUMNS, [row for r in runs for row in key_rows(r, cap)]),
        "",
        "### Per model (workloads of several models)",
        "",
        table(
            ["workload", "mode", "model", *KEY_COLUMNS[3:]],
            [row for r in runs if len(r.models) > 1 for row in key_rows(r, cap, by_model=True)],
        ),
        "",
        "### Shedding",
        "",
        "The gateways' own count of their 503s by reason (`llm_shed`): `overloaded` and "
        "`queue_full` answer at once, `deadline` after the whole queue deadline; how many "
        "took longer than 100 ms real, and the median Retry-After (the gateway's seconds, "
        "real time).",
        "",
        table(
            [
                "workload",
                "mode",
                "shed",
                "by reason",
                "over 100 ms",
                "p50 / p95 / max ms",
                "Retry-After p50 s",
            ],
            [
                [
                    r.workload,
                    r.mode,
                    str(r.shed),
                    ", ".join(f"{k} {v}" for k, v in sorted(r.shed_reasons.items())) or "-",
                    str(r.shed_slow),
                    f"{_ms(r.shed_p50_ms)} / {_ms(r.shed_p95_ms)} / {_ms(r.shed_max_ms)}",
                    "-" if r.retry_after_p50 is None else f"{r.retry_after_p50:g}",
                ]
                for r in runs
                if r.shed or r.shed_reasons
            ],
        ),
        "",
        "### Unloaded (the same requests one at a time, model loaded everywhere)",
        "",
        table(
            [
                "workload",
                "mode",
                "requests",
                "TTFT p50",
                "TTFT p95",
                "median generation",
                "bound (p95 + 2 x median gen.)",
            ],
            [
                [
                    b.workload,
                    b.mode,
                    f"{b.completed}/{b.requests}",
                    seconds(b.ttft_p50),
                    seconds(b.ttft_p95),
                    seconds(b.generation_p50),
                    seconds(b.bound),
                ]
                for b in baselines
            ],
        ),
        "",
        *sections,
        "## Targets",
        "",
        table(
            ["workload", "mode", "target", "result", "numbers"],
            [[v.workload, v.mode, v.target, f"**{v.label}**", v.numbers] for v in verdicts],
        ),
        "",
        "## The machine and the load generator",
        "",
        "CPU each part used during the run (share of one core; the machine has 2) and how "
        "busy the whole machine was (share of both cores, other work included). The "
        "generator's event-loop lag (a 5 ms ticker) and how late requests left against "
        "their plan, in real ms; a stall is a lag over 25 ms: the requests waiting across "
        f"one had their times stretched by it (x {setup.scale:g} once simulated), so their "
        "count and the p95 TTFT without them are shown.",
        "",
        table(
            [
                "workload",
                "mode",
                "emulators",
                "nginx",
                "gateways",
                "generator",
                "machine busy",
                "loop lag p99 / max ms",
                "send lag p99 ms",
                "stalls",
                "requests hit",
                "TTFT p95 without them",
            ],
            [
                [
                    r.workload,
                    r.mode,
                    _share(r.cpu.get("emulators")),
                    _share(r.cpu.get("nginx")),
                    _share(r.cpu.get("gateways")),
                    _share(r.generator_cpu),
                    _share(r.cpu.get("machine")),
                    f"{_ms(r.loop_lag_p99_ms)} / {_ms(r.loop_lag_max_ms)}",
                    _ms(r.send_lag_p99_ms),
                    str(r.stalls),
                    str(r.stalled_requests),
                    seconds(r.ttft_p95_unstalled, cap),
                ]
                for r in runs
            ],
        ),
    ]
    errors = [(r, d) for r in runs for d in r.error_details]
    if errors:
        out += ["", "## Errors the clients saw", ""]
        out += [f"- {r.workload} {r.mode}: `{d}`" for r, d in errors]
    logged = [(r, e, n) for r in runs for e, n in r.gateway_exceptions.items()]
    if logged:
        out += ["", "## Exceptions in the gateways' logs", ""]
        out += [f"- {r.workload} {r.mode}: {n} x `{e}`" for r, e, n in logged]
    return "\n".join(out) + "\n"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def write_json(
    path: Path,
    setup: Setup,
    capacities: Mapping[str, float],
    service: Sequence[ServiceCheck],
    runs: Sequence[RunSummary],
    baselines: Sequence[Baseline],
    verdicts: Sequence[Verdict],
    raw: Mapping[tuple[str, str], Mapping[str, Any]],
    request_fields: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> None:
    data = {
        "setup": asdict(setup),
        "capacity": dict(capacities),
        "service_times": [asdict(s) for s in service],
        "runs": [{**r.to_json(), **raw.get((r.workload, r.mode), {})} for r in runs],
        "baselines": [{**asdict(b), "bound": b.bound} for b in baselines],
        "targets": [{**asdict(v), "result": v.label} for v in verdicts],
        "request_fields": list(request_fields),
        **(extra or {}),
    }
    path.write_text(dumps(finite(data)) + "\n")


# Long lists of small records, written one record per line.
_ONE_PER_LINE = ("requests", "timeline")


def dumps(data: dict[str, Any]) -> str:
    """Indented JSON, except each record of the long lists on a line of its own."""
    compact: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: [token(v) for v in item]
                if k in _ONE_PER_LINE and isinstance(item, list)
                else mark(item)
                for k, item in value.items()
            }
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    def token(record: Any) -> str:
        compact.append(json.dumps(record, separators=(",", ":"), allow_nan=False))
        return f"@@record-{len(compact) - 1}@@"

    text = json.dumps(mark(data), indent=1, allow_nan=False)
    return re.sub(r'"@@record-(\d+)@@"', lambda match: compact[int(match[1])], text)
