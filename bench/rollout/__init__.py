"""`make bench-rollout`: day-two operations under steady streaming load, planned and naive.

- `stack.py`: the local stack under test (`llm-stack local up`, this bench's stack file).
- `load.py`: steady streaming clients through the TLS edge; every request recorded.
- `operations.py`: replacing an Ollama instance, a gateway replica, renewing the edge's
  certificate, each the planned way and the naive way.
- `report.py`: per-operation numbers; results.json and results.md.
- `plot.py`: the load over time with the operations marked (load.png).
- `cli.py`: one run, start to stop (`python -m bench.rollout`).
"""
