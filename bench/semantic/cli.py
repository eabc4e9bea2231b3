"""`python -m bench.semantic [--threshold T] [--ollama URL --model M] [--write]`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from llm_gateway.cache.semantic_match import DEFAULT_THRESHOLD

from bench.semantic import embedder, pairs, plot, report
from bench.semantic.evaluate import evaluate

HERE = Path(__file__).resolve().parent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.semantic", description=__doc__)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--ollama", help="embed through this Ollama's /api/embed instead")
    parser.add_argument("--model", default="all-minilm", help="the embedding model (--ollama)")
    parser.add_argument("--pairs", type=Path, default=pairs.PAIRS_FILE)
    parser.add_argument(
        "--write", action="store_true", help="write results.md, results.json, curve.png"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="where --write writes")
    args = parser.parse_args(argv)
    if args.ollama:
        embed, source = embedder.ollama(args.ollama, args.model), f"{args.model} at {args.ollama}"
    else:
        embed, source = embedder.local(), "all-MiniLM-L6-v2 (packaged, numpy)"
    labelled = pairs.load(args.pairs)
    vectors = embedder.embed_all(embed, (t for p in labelled for t in (p.a, p.b)))
    ev = evaluate(labelled, vectors)
    text = report.summary(ev, args.threshold, source)
    curve = report.curve_table(ev)
    print(text)
    print()
    print(curve)
    if args.write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.md").write_text(
            "# Semantic cache evaluation\n\nWritten by `make semantic-eval`.\n\n"
            + text
            + "\n\nOver thresholds (plot: `curve.png`):\n\n"
            + curve
            + "\n",
            encoding="utf-8",
        )
        (args.out / "results.json").write_text(report.as_json(ev, args.threshold, source))
        plot.write_curve(ev, args.threshold, args.out / "curve.png")
        print(f"\nwrote {args.out / 'results.md'}, results.json, curve.png")
    return 0
