"""The llm-stack Pulumi program and the local process stack.

- `program.py`: `run()`, the program body: read the config, declare one platform.
- `pulumi_config.py`: the stack config as the Pulumi CLI hands it over, typed and checked.
- `docker/`: the Docker platform, one component per service.
- `kubernetes/`: the Kubernetes platform, the same services as manifests.
- `shared/`: what both platforms use (names, labels, credentials, TLS, Redis paths).
- `gateway_env.py`, `ollama_env.py`, `redis_conf.py`: what each service runs with,
  decided once for every platform and the local stack.
- `policy/`: the stack's security invariants as rules and as a policy pack.
- `local/`: the same stack as plain processes on this host (`llm-stack local up`).
- `bootstrap/`: fetching the pinned Pulumi CLI when none is installed.
- `cli.py`: the `llm-stack` command line.
"""
