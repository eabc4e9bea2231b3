"""The Docker platform: one `ComponentResource` per service, on one host's engine.

- `stack.py`: `DockerStack`, every piece of one stack, and its outputs.
- `network.py`: the three networks and what each is for.
- `volumes.py`: named volumes, the data that outlives containers.
- `redis.py`: the Redis container.
- `ollama.py`: the model puller and the Ollama instances.
- `gateway.py`: the gateway image and its replicas.
- `edge.py`: nginx, the TLS edge and the internal balancer.
- `monitoring.py`: Prometheus, Grafana and the exporters.
- `rollout.py`: rolling changes: instances and replicas replaced one at a time, each
  Ollama instance drained through the gateway first and re-admitted once healthy.
- `containers.py`: small builders the components share (labels, healthchecks, uploads).

Each component takes an `XArgs` dataclass holding only what it reads (config sections,
names, rendered files, the resources it joins), never the whole `StackConfig`: the
wiring is visible in `stack.py`, where the config is read and rendered once.

What Kubernetes uses too (names, labels, credentials, TLS, Redis paths) is in
`llm_stack.shared`.
"""
