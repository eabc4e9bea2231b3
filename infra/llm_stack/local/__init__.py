"""The local stack: the whole request path as plain processes on this host.

`llm-stack local up` renders every config with the same functions the Pulumi program
uses (nginx, Prometheus, Grafana, the gateway's environment) and runs redis-server,
Ollama (or emulators), nginx, the gateways, the nginx exporter and Prometheus on
loopback, supervised until Ctrl-C or SIGTERM. Modules, in the order a run uses them:

- `errors.py`: `LocalStackError`, a problem the user can fix (what is wrong + how).
- `source.py`: which stack file, its `StackConfig` and the plain API keys it declares.
- `binaries.py`: the system binaries needed, with the Debian package of each.
- `deps.py`: `llm-stack local deps`, installs the missing ones (and nothing else).
- `ports.py`: the configured edge ports (checked free) and free loopback ports.
- `ollama.py`: a real Ollama on the given URL, or emulators.
- `layout.py`: where everything lives in the work dir.
- `credentials.py`: the dev keys and the Redis password, kept across runs of a stack.
- `plan.py`: a pure description of what runs where (argv, env, ports, checks).
- `tls.py`, `files.py`: the certificate and every rendered file in the work dir.
- `readiness.py`, `supervisor.py`: start, wait for, restart and stop processes.
- `outputs.py`: the outputs file (the Pulumi stack output names, plus `local`).
- `console.py`: what the user sees; `runner.py`: one run, start to stop.
"""
