"""`python -m bench.rollout`: start the local stack, load it, run every operation.

Steady load first (the baseline), then the planned operations one at a time (each
Ollama instance, each gateway replica, the edge's certificate), then the same the
naive way, with a quiet gap between two. Each process is replaced at most once per
half, so the supervisor's restart backoff is back at its first step for each. The
load stops, the stack stops (on Ctrl-C too), and the results are written: results.json,
results.md and load.png next to this file (or in --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.rollout import plot, report
from bench.rollout.load import Load, client_context
from bench.rollout.operations import Operation, Operator, trusted_ca
from bench.rollout.stack import FIRST_TOKEN_DELAY, MODEL, TOKEN_DELAY, TOKENS, LocalStack

HERE = Path(__file__).resolve().parent
CLIENTS = 8
BASELINE_SECONDS = 6.0
GAP_SECONDS = 4.0
KINDS = ("ollama", "gateway", "edge")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.rollout", description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE, help="where the results go")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--gap", type=float, default=GAP_SECONDS, help="seconds between ops")
    parser.add_argument(
        "--workdir", type=Path, help="keep the stack's files and logs here (default: a temp dir)"
    )
    parser.add_argument(
        "--only", choices=KINDS, action="append", help="run only these operations (repeatable)"
    )
    return parser


async def _run(
    stack: LocalStack, workdir: Path, clients: int, gap: float, kinds: Sequence[str]
) -> dict[str, object]:
    ca, ca_path = trusted_ca(workdir)
    context = client_context(stack.layout.cert, ca_path)
    load = Load(stack.edge_url, stack.load_key, MODEL, context, clients)
    operator = Operator(stack, load.now, ca)
    running = asyncio.create_task(load.run())
    operations: list[Operation] = []

    async def step(done: Operation) -> None:
        operations.append(done)
        print(f"  {done.way:7} {done.name} {done.target}: {done.seconds:.1f}s  {done.notes}")
        await asyncio.sleep(gap)

    await asyncio.sleep(BASELINE_SECONDS)
    baseline = (0.5, load.now())
    emulators = [s.name for s in stack.services("ollama")]
    gateways = [s.name for s in stack.services("gateway")]
    for planned in (True, False):
        print("planned operations:" if planned else "naive operations:")
        for name in emulators if "ollama" in kinds else []:
            await step(await asyncio.to_thread(operator.replace_ollama, name, planned))
        for name in gateways if "gateway" in kinds else []:
            await step(await asyncio.to_thread(operator.replace_gateway, name, planned))
        if "edge" in kinds:
            await step(await asyncio.to_thread(operator.renew_edge_certificate, planned))
    load.stop()
    samples = await running
    setup = {
        "instances": len(emulators),
        "gateways": len(gateways),
        "clients": clients,
        "routing": "model-aware",
        "stream_seconds": round(FIRST_TOKEN_DELAY + TOKENS * TOKEN_DELAY, 2),
        "tokens": TOKENS,
        "gap_seconds": gap,
    }
    data = report.results(samples, operations, baseline, setup)
    data["samples"] = [s.as_json() for s in samples]
    return {"data": data, "samples": samples, "operations": operations}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        stack = LocalStack(workdir)
        began = time.monotonic()
        print("starting the local stack (2 emulated Ollama instances, 2 gateways, the edge)")
        try:
            stack.start()
            stack.pace_all()
            kinds = args.only or KINDS
            result = asyncio.run(_run(stack, workdir, args.clients, args.gap, kinds))
        finally:
            stack.stop()
        data = result["data"]
        assert isinstance(data, dict)
        # Every request, for a closer look (kept with --workdir).
        (workdir / "samples.json").write_text(json.dumps(data.pop("samples")) + "\n")
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "results.md").write_text(report.markdown(data))
    plot.plot(result["samples"], result["operations"], out / "load.png")  # type: ignore[arg-type]
    print(report.markdown(data))
    print(f"took {time.monotonic() - began:.0f}s; results in {out}")
    planned = data["totals"]["planned"]
    return 0 if planned["failed"] == 0 and planned["cut"] == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
