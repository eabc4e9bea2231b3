"""The semantic cache's evaluation: how often a paraphrase hits, how often a near-miss
(another question in the same words) would be served the wrong answer.

`python -m bench.semantic` (or `make semantic-eval`) embeds both sides of every pair of
`pairs.tsv` with the real all-MiniLM-L6-v2 (in this process, or from an Ollama
`/api/embed` with `--ollama URL`), applies the gateway's guards
(`llm_gateway.cache.semantic_guards`) and prints, for a threshold, the false-hit rate
on near-misses and the hit rate on paraphrases, with and without the guards, what each
guard catches and costs, and a curve over thresholds; `--write` also writes
`results.md`, `results.json` and `curve.png` beside this file.

Modules:

- `pairs.py`: the labelled set (`pairs.tsv`, written for this project) and its reader.
- `embedder.py`: where the vectors come from (the packaged model, or an Ollama).
- `evaluate.py`: similarities, guard verdicts, the rates at a threshold, the curve.
- `report.py`: the printed table, `results.md`/`results.json`; `plot.py`: the PNG.
- `cli.py`: the invocation.
"""
