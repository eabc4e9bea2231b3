"""`python -m bench.system`: every workload in every mode, then tables, targets, plots.

One invocation starts the stack once (Redis, the emulators, nginx), measures the
service times the capacities rest on, then for each workload and mode: resets the
emulators (preloading the workload's model if it says so), starts that mode's gateway
replicas, runs the plan (the same arrivals in every mode), reads the emulators'
counters and stops the gateways. Everything is stopped at the end, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp

from bench.system import chatstats, cpu, dropstats, loadgen
from bench.system.chatload import KEY as CHAT_KEY
from bench.system.chatload import run_chats
from bench.system.chats import ChatPlan, Conversation, make_chat_plan, pinned_instance, smoke_plan
from bench.system.chatstats import ChatStats, chat_stats
from bench.system.dropstats import DropStats, drop_stats
from bench.system.loadgen import ROW_FIELDS, Event, Limits, LoadResult, Outcome, Sampler, run_load
from bench.system.plots import write_plots
from bench.system.report import ServiceCheck, Setup, markdown, write_json
from bench.system.stack import (
    ADMIN_KEY,
    LOAD_PATIENCE_SIM,
    POLL_REAL,
    QUEUE_DEADLINE_SIM,
    BenchStack,
    Counters,
    Gateways,
)
from bench.system.summary import Baseline, RunSummary, baseline, summarize
from bench.system.targets import evaluate
from bench.system.workloads import (
    MODELS,
    TWO_GPUS,
    Capacities,
    Layout,
    Lengths,
    Mode,
    Plan,
    Workload,
    build,
    capacities,
    key_names,
    make_plan,
    probe_requests,
    select,
)

HERE = Path(__file__).resolve().parent
# W1's 20 simulated minutes take 60 s real per mode; the whole invocation about 7.
SCALE = 20.0
SMOKE_SCALE = 40.0
# Every process of the stack inherits it: other work on the machine waits, not the bench
# (1 ms lost here is 20 ms simulated). Needs root; otherwise it runs as it is.
NICE = -10
TTFT_TIMEOUT_SIM = 180.0
TOTAL_TIMEOUT_SIM = 900.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.system",
        description="System benchmark: least-conn vs model-aware routing.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a very short run (W1, W2, one replica)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        help=f"emulator time scale (default {SCALE:g}, smoke {SMOKE_SCALE:g})",
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--workloads", help="comma-separated subset, e.g. W1,W3")
    parser.add_argument(
        "--modes", help="comma-separated subset of the modes by label, e.g. least-conn"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="where results and plots go")
    parser.add_argument("--max-requests", type=int, default=4000, help="cap per run")
    parser.add_argument("--probe-requests", type=int, default=3, help="per model")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and configs")
    parser.add_argument(
        "--nice",
        type=int,
        help=f"niceness of the bench and the stack it starts (default {NICE}, smoke 0): "
        "time-scaled runs are sensitive to CPU starvation on a shared machine",
    )
    args = parser.parse_args(argv)
    if args.scale is None:
        args.scale = SMOKE_SCALE if args.smoke else SCALE
    if args.nice is None:
        args.nice = 0 if args.smoke else NICE
    if not args.scale > 0:
        parser.error("--scale must be > 0")
    return args


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _limits(scale: float) -> Limits:
    return Limits(ttft=TTFT_TIMEOUT_SIM / scale, total=TOTAL_TIMEOUT_SIM / scale)


def probe_service(stack: BenchStack, caps: Capacities, count: int, seed: int) -> list[ServiceCheck]:
    """Each model's requests one at a time straight to one emulator, the model loaded."""
    stack.reset()
    url = stack.emulator_urls[0]
    checks = []
    for model in MODELS:
        stack.preload([model])
        result = loadgen.run(
            run_load(
                probe_requests(model, count, seed), [url], {"probe": ""}, stack.scale,
                _limits(stack.scale), sequential=True,
            )
        )  # fmt: skip
        times = [
            ((o.ended or 0.0) - o.sent) * stack.scale
            for o in result.outcomes
            if o.kind == "completed"
        ]
        measured = statistics.median(times) if times else None
        checks.append(ServiceCheck(model, caps.service[model], measured, len(times)))
    return checks


def _sampler(stack: BenchStack, urls: Sequence[str], model_aware: bool) -> Sampler:
    """A compact timeline: what each instance holds, and each gateway's queue."""
    admin = {"Authorization": f"Bearer {stack.keys[ADMIN_KEY]}"}

    async def sample(session: aiohttp.ClientSession) -> dict[str, Any]:
        out: dict[str, Any] = {"instances": []}
        for url in stack.emulator_urls:
            try:
                async with session.get(f"{url}/_emulator/scheduler") as response:
                    view = await response.json()
            except aiohttp.ClientError:
                out["instances"].append(None)  # stopped (W6)
                continue
            out["instances"].append(
                {
                    "loaded": [
                        [m["model"], m["in_flight"], m["options"]["num_ctx"]]
                        for m in view["loaded"]
                    ],
                    "pending": view["pending_count"],
                    "loading": (view["scheduling"] or {}).get("model"),
                }
            )
        if model_aware:
            out["gateways"] = []
            for url in urls:
                async with session.get(f"{url}/admin/queue", headers=admin) as response:
                    snap = await response.json()
                out["gateways"].append(
                    {
                        "queued": snap["queued"],
                        "depth": {m: q["depth"] for m, q in snap["queues"].items()},
                        "reserved_for": [i["reserved_for"] for i in snap["instances"]],
                        "in_flight": [i["in_flight"] for i in snap["instances"]],
                    }
                )
        return out

    return sample


class Bench:
    def __init__(self, stack: BenchStack, args: argparse.Namespace) -> None:
        self.stack = stack
        self.scale = stack.scale
        self.args = args
        self.runs: list[RunSummary] = []
        self.baselines: list[Baseline] = []
        self.outcomes: dict[tuple[str, str], list[Outcome]] = {}
        self.raw: dict[tuple[str, str], dict[str, Any]] = {}
        self.chats: list[ChatStats] = []
        self.drops: list[DropStats] = []

    def run_workload(self, workload: Workload) -> None:
        if workload.chat:
            chat_plan = make_chat_plan(self.args.seed, workload.duration)
            if self.args.smoke:
                chat_plan = smoke_plan(chat_plan, 6)
            for mode in workload.modes:
                self.run_chat_mode(workload, mode, chat_plan)
            return
        plan = make_plan(workload, self.args.seed, self.args.max_requests)
        if plan.truncated:
            _progress(f"{workload.name}: {plan.truncated} arrivals over --max-requests dropped")
        for mode in workload.modes:
            self.run_mode(workload, mode, plan)

    def _drop_events(self, workload: Workload, meter: cpu.CpuMeter) -> list[tuple[float, Event]]:
        drop = workload.drop
        if drop is None:
            return []
        stack = self.stack

        def stop() -> None:
            # The instance's CPU so far: its process is gone when the run's CPU is read.
            meter.note()
            stack.stop_instance(drop.instance)

        async def down() -> None:
            _progress(f"  {workload.name}: instance {drop.instance} stopped")
            await asyncio.to_thread(stop)

        async def back() -> None:
            await asyncio.to_thread(stack.start_instance, drop.instance)
            _progress(f"  {workload.name}: instance {drop.instance} back (cold)")

        return [
            (drop.down_at * workload.duration, down),
            (drop.back_at * workload.duration, back),
        ]

    def run_chat_mode(self, workload: Workload, mode: Mode, plan: ChatPlan) -> None:
        stack, scale = self.stack, self.scale
        started = time.perf_counter()
        stack.reset()
        stack.preload(workload.preload)
        gateways = stack.start_gateways(mode)
        urls = gateways.urls

        def route(conversation: Conversation) -> tuple[int, str]:
            # Pinned: gateway i passes everything to instance i.
            number = pinned_instance(conversation) if mode.pinned else conversation.index
            replica = number % len(urls)
            return replica, urls[replica]

        model_aware = mode.routing == "model-aware"
        sampler = _sampler(stack, urls, model_aware)
        key = stack.keys[CHAT_KEY]

        def load() -> LoadResult:
            return loadgen.run(run_chats(plan, route, key, scale, _limits(scale), sampler=sampler))

        run, result, counters = self._measure(workload, mode, gateways, load)
        stats = chat_stats(mode.label, result.outcomes, counters, run.span, scale)
        self.chats.append(stats)
        _progress(
            f"  {workload.name} {mode.label}: {stats.completed}/{stats.turns} turns, "
            f"follow-up p50 {stats.follow_p50 or 0:.2f} s p95 {stats.follow_p95 or 0:.2f} s, "
            f"evaluated {stats.evaluated_share:.1%}, busiest {stats.busiest:.2f}x, "
            f"{time.perf_counter() - started:.0f} s real"
        )

    def _measure(
        self,
        workload: Workload,
        mode: Mode,
        gateways: Gateways | None,
        load: Any,
        meter: cpu.CpuMeter | None = None,
    ) -> tuple[RunSummary, LoadResult, Counters]:
        """Run `load()` between counter and CPU readings (`meter`'s, if `load` stops
        one of the stack's processes); the run's summary is kept."""
        stack, scale = self.stack, self.scale
        model_aware = mode.routing == "model-aware" and gateways is not None
        if meter is None:
            meter = cpu.CpuMeter(lambda: stack.pids(gateways))
        try:
            before = stack.counters()
            meter.start()
            result: LoadResult = load()
            cpu_used = meter.stop()
            counters = stack.counters().minus(before)
            urls = [] if gateways is None else gateways.urls
            snapshots = [stack.admin_queue(url) for url in urls] if model_aware else []
            reasons = {} if gateways is None else stack.shed_reasons(gateways)
        finally:
            if gateways is not None:
                gateways.stop()
        run = summarize(
            workload.name, mode.label, workload.load, workload.duration, result, counters,
            scale, cpu_used, reasons,
        )  # fmt: skip
        run.gateway_exceptions = {} if gateways is None else gateways.exceptions()
        self.runs.append(run)
        self.outcomes[(workload.name, mode.label)] = result.outcomes
        self.raw[(workload.name, mode.label)] = {
            "emulator_counters": list(counters.per_instance),
            "gateway_snapshots_at_end": snapshots,
            "timeline": result.samples,
            "requests": [o.row() for o in result.outcomes],
        }
        return run, result, counters

    def run_mode(self, workload: Workload, mode: Mode, plan: Plan) -> None:
        stack, scale, limits = self.stack, self.scale, _limits(self.scale)
        started = time.perf_counter()
        stack.reset()
        stack.preload(workload.preload)
        gateways = stack.start_gateways(mode)
        model_aware = mode.routing == "model-aware"
        if plan.baseline:
            try:
                light = run_load(
                    plan.baseline, gateways.urls, stack.keys, scale, limits,
                    sequential=True, pause=1.0 / scale,
                )  # fmt: skip
                self.baselines.append(
                    baseline(workload.name, mode.label, loadgen.run(light), scale)
                )
            except BaseException:
                gateways.stop()
                raise
        meter = cpu.CpuMeter(lambda: stack.pids(gateways))
        events = self._drop_events(workload, meter)

        def load() -> LoadResult:
            return loadgen.run(
                run_load(
                    plan.requests, gateways.urls, stack.keys, scale, limits,
                    sampler=_sampler(stack, gateways.urls, model_aware), sample_every=1.0,
                    events=events,
                )
            )  # fmt: skip

        run, result, _ = self._measure(workload, mode, gateways, load, meter)
        if workload.drop is not None:
            drop = workload.drop
            self.drops.append(
                drop_stats(
                    mode.label, result.outcomes, scale,
                    drop.down_at * workload.duration, drop.back_at * workload.duration,
                )
            )  # fmt: skip
            if not stack.emulators[drop.instance].running:
                stack.start_instance(drop.instance)
        _progress(
            f"  {workload.name} {mode.label}: {run.completed}/{run.sent} completed, "
            f"{run.shed} shed, {run.timeouts} timeouts, {run.loads} loads, "
            f"{time.perf_counter() - started:.0f} s real"
        )


def _notes(args: argparse.Namespace, lengths: Lengths) -> tuple[str, ...]:
    scale = args.scale
    return (
        "2 emulated Ollama instances, one process each: `--ollama-defaults --vram 24 "
        "--context-length 4096` (NUM_PARALLEL 1, MAX_LOADED_MODELS 3, MAX_QUEUE 512, "
        "keep-alive 5m), gemma2:27b and mistral-small:24b at 16 GB with 8 s loads, llama3.2.",
        f"Arrivals: W1 {lengths.w1:g} simulated s, the others {lengths.others:g} s; W1 starts "
        "cold, W2-W4 with their model preloaded on both instances (the counters start "
        "after the preload).",
        "Requests: 120-word prompts (125 prompt tokens), num_predict 256, streamed "
        "(/api/generate and /api/chat), unique prompts, gateway cache off, keys unlimited.",
        f"Gateway time settings scaled to real time: queue deadline {QUEUE_DEADLINE_SIM:g} s "
        f"simulated = {QUEUE_DEADLINE_SIM / scale:g} s real, load patience "
        f"{LOAD_PATIENCE_SIM:g} s = {LOAD_PATIENCE_SIM / scale:g} s real, /api/ps poll "
        f"{POLL_REAL:g} s real = {POLL_REAL * scale:g} s simulated. Upstream timeouts are the "
        "stack's (real seconds, generous).",
        "nginx: the stack's own render (least_conn, balancer read timeout 600 s real, "
        f"max_fails 2 / fail_timeout 10 s real = {10 * scale:g} s simulated, retries on "
        "503).",
        "Client: open-loop Poisson arrivals, one aiohttp pool without a connection limit, in "
        "this process on uvloop (its lag is in the last table); model-aware x2 is two "
        "gateway replicas behind client-side round robin.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    lengths = Lengths.smoke() if args.smoke else Lengths()
    caps = capacities()
    workloads = build(lengths, caps)
    names = args.workloads.split(",") if args.workloads else (["W1", "W2"] if args.smoke else [])
    if names:
        workloads = select(workloads, names)
    if args.modes:
        wanted = {m.strip() for m in args.modes.split(",")}
        workloads = [
            replace(w, modes=tuple(m for m in w.modes if m.label in wanted)) for w in workloads
        ]
    if args.smoke:  # one gateway per run: each replica costs seconds of start-up
        workloads = [
            replace(w, modes=tuple(m for m in w.modes if m.replicas == 1)) for w in workloads
        ]
    niceness = _set_niceness(args.nice)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="llm-bench-system-"))
    load_start = os.getloadavg()
    started = time.perf_counter()
    keys = key_names(workloads)
    layouts: list[Layout] = []
    for workload in workloads:
        if workload.layout not in layouts:
            layouts.append(workload.layout)
    bench: Bench | None = None
    service: list[ServiceCheck] = []
    try:
        for number, layout in enumerate(layouts):
            directory = workdir / f"stack-{number}"
            directory.mkdir()
            stack = BenchStack(directory, args.scale, keys, layout)
            if bench is None:
                bench = Bench(stack, args)
            bench.stack = stack
            try:
                _progress(f"starting {layout.name} in {directory} (scale {args.scale:g}) ...")
                stack.start()
                if layout == TWO_GPUS:
                    _progress("measuring service times ...")
                    count = 1 if args.smoke else args.probe_requests
                    service = probe_service(stack, caps, count, args.seed)
                for workload in workloads:
                    if workload.layout == layout:
                        _progress(f"{workload.name}: {workload.title}")
                        bench.run_workload(workload)
            finally:
                stack.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if args.keep_workdir:
            _progress(f"logs and configs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    setup = Setup(
        scale=args.scale,
        seed=args.seed,
        smoke=args.smoke,
        ttft_timeout=TTFT_TIMEOUT_SIM,
        notes=(*_notes(args, lengths), niceness),
        load_average_start=load_start,
        load_average_end=os.getloadavg(),
        real_seconds=time.perf_counter() - started,
    )
    assert bench is not None
    capacity = {
        "W1 (gemma2:27b and mistral-small:24b each on its own instance)": caps.w1,
        "W2-W4 (mistral-small:24b on both instances)": caps.one_model,
        "W5 (turns, every follow-up's history cached)": caps.chat_turns,
    }
    runs_by_key = {(r.workload, r.mode): r for r in bench.runs}
    baselines_by_key = {(b.workload, b.mode): b for b in bench.baselines}
    verdicts = evaluate(runs_by_key, baselines_by_key, TTFT_TIMEOUT_SIM)
    names_run = {w.name for w in workloads}
    if "W5" in names_run:
        verdicts += chatstats.check_w5({s.mode: s for s in bench.chats})
    if "W6" in names_run:
        verdicts += dropstats.check_w6(bench.drops[0] if bench.drops else None, QUEUE_DEADLINE_SIM)
    sections = []
    if bench.chats:
        sections += [
            "## W5: multi-turn chats and prefix affinity",
            "",
            chatstats.NOTES,
            "",
            chatstats.markdown(bench.chats),
            "",
        ]
    if bench.drops:
        sections += [
            "## W6: an instance lost and back cold",
            "",
            dropstats.NOTES,
            "",
            dropstats.markdown(bench.drops),
            "",
        ]
    text = markdown(
        setup, workloads, capacity, service, bench.runs, bench.baselines, verdicts, sections
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    extra = {
        "chats": [s.to_json() for s in bench.chats],
        "capacity_drop": [s.to_json() for s in bench.drops],
    }
    write_json(
        args.out / "results.json", setup, capacity, service, bench.runs, bench.baselines,
        verdicts, bench.raw, ROW_FIELDS, extra,
    )  # fmt: skip
    bounds = {b.mode: b.bound for b in bench.baselines if b.workload == "W2"}
    write_plots(
        args.out / "plots", bench.outcomes, bench.runs, args.scale, TTFT_TIMEOUT_SIM, bounds,
        bench.chats, bench.drops,
    )  # fmt: skip
    return 0


def _set_niceness(wanted: int) -> str:
    """Set this process's niceness (children inherit it); a note on what was set."""
    if wanted:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, wanted)
        except PermissionError:
            return f"Niceness {wanted} was not allowed: the stack ran at normal priority."
    current = os.getpriority(os.PRIO_PROCESS, 0)
    return f"The bench and every process of the stack ran at niceness {current}."


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
