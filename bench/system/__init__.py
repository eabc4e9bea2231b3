"""The system benchmark: least-conn vs model-aware routing, end to end.

`python -m bench.system` (or `make bench-system`) runs every workload in every routing
mode against emulated Ollama instances (one stack per layout) on loopback and writes `results.md`,
`results.json` and `plots/` beside this file; `--smoke` is a very short version.

Modules:

- `cli.py`: the invocation: stack up, service-time probe, each workload in each mode,
  then the report; everything stopped at the end, on Ctrl-C too.
- `capacity.py`: service times from the emulator's catalogue, and a mix's capacity.
- `workloads.py`: W1-W6, the layouts and routing modes each runs in, seeded plans.
- `chats.py`: W5's conversations (multi-turn, shared system prompts) and capacity;
  `chatload.py`: their closed-loop client; `chatstats.py`: W5's numbers and targets.
- `dropstats.py`: W6's numbers and targets (an instance lost, back cold).
- `stack.py`: Redis, the emulators, nginx (the project's render), gateway replicas
  with the stack's environment and time settings scaled; the emulators' counters.
- `loadgen.py`: the open-loop streaming client (TTFT, outcomes, its own lag).
- `summary.py`: one run's numbers; `targets.py`: the issue's targets, PASS/FAIL.
- `report.py`: Markdown tables and the JSON dump; `plots.py`: the PNG plots.
"""
