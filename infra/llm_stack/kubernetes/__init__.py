"""The stack on Kubernetes (`platform: kubernetes`): one ComponentResource per file.

- `stack.py`: `KubernetesStack`, everything below for one stack config.
- `namespace.py`: the namespace, enforcing the restricted Pod Security Standard.
- `network_policies.py`: default deny, then each allowed path (edge -> gateway -> ...).
- `ollama.py`: a StatefulSet, one GPU per pod, a headless Service, models pulled first.
- `pull.py`: the pull script: models on the volume are kept, pinned digests checked.
- `drain.py`: a stopping Ollama pod drains through the gateway (sidecar, key, hooks).
- `shutdown.py`: preStop waits and grace periods, sized to the longest generation.
- `redis.py`: a StatefulSet with a volume and the append-only file; config in a Secret.
- `gateway.py`: a Deployment (the `gateway_environment` contract), PDB, HPA or KEDA.
- `edge.py`: nginx as edge (LoadBalancer or HTTPRoute) and least-conn balancer; a
  sidecar reloads nginx when its certificate changes.
- `monitoring.py`: Prometheus (ours, or ServiceMonitors + PrometheusRule) and dashboards.
- `names.py`, `workload.py`: names, labels, DNS names; hardening, resources, probes.
- `pull.py`: the model pull of the Ollama pods: skip what the volume has, check pins.
- `drain.py`: Ollama pods drain through the gateway before they stop.
- `shutdown.py`: how long each terminating pod keeps serving (preStop waits, grace).

Config files come from the same renderers as on Docker (`llm_nginx`,
`llm_monitoring`, `render_redis_conf`); secrets are Kubernetes Secrets made from
Pulumi secrets, never ConfigMaps.
"""
