"""Roles and labels every container and network of the stack carries.

Labels are how the policy pack and the live-host checks tell containers apart without
parsing names: `llm-stack.role` says what a container is, `llm-stack.stack` which
stack owns it. Pure data: the policy rules import this without importing Pulumi.
"""

from __future__ import annotations

from typing import Final

ROLE_LABEL: Final = "llm-stack.role"
STACK_LABEL: Final = "llm-stack.stack"
# A container meant to run once and exit (the model puller): restart "no" is right.
ONE_SHOT_LABEL: Final = "llm-stack.one-shot"
# Set on a container whose published ports may bind a wildcard address because the
# stack config asks for it (edge.bindAddress: 0.0.0.0); absent, wildcard binds fail.
WILDCARD_BIND_LABEL: Final = "llm-stack.wildcard-bind"
# Set (with the reason as value) on a container whose image cannot run any check:
# no shell, no HTTP client. Prometheus's `up{job=...}` watches it instead.
NO_HEALTHCHECK_LABEL: Final = "llm-stack.no-healthcheck"
# On networks: which of the three networks it is.
NETWORK_LABEL: Final = "llm-stack.network"

OLLAMA: Final = "ollama"
MODEL_PULLER: Final = "model-puller"
REDIS: Final = "redis"
# The response cache's own Redis (the one above keeps state and never evicts).
REDIS_CACHE: Final = "redis-cache"
GATEWAY: Final = "gateway"
NGINX: Final = "nginx"
PROMETHEUS: Final = "prometheus"
GRAFANA: Final = "grafana"
NGINX_EXPORTER: Final = "nginx-exporter"
GPU_EXPORTER: Final = "gpu-exporter"

ROLES: Final = (
    OLLAMA,
    MODEL_PULLER,
    REDIS,
    REDIS_CACHE,
    GATEWAY,
    NGINX,
    PROMETHEUS,
    GRAFANA,
    NGINX_EXPORTER,
    GPU_EXPORTER,
)

INTERNAL_NETWORK: Final = "internal"
EDGE_NETWORK: Final = "edge"
EGRESS_NETWORK: Final = "egress"

# Which networks each role may join. Only the edge roles reach the edge network (the
# one that publishes ports); only the puller gets egress, and nothing else with it.
ALLOWED_NETWORKS: Final[dict[str, frozenset[str]]] = {
    OLLAMA: frozenset({INTERNAL_NETWORK}),
    MODEL_PULLER: frozenset({EGRESS_NETWORK}),
    REDIS: frozenset({INTERNAL_NETWORK}),
    REDIS_CACHE: frozenset({INTERNAL_NETWORK}),
    GATEWAY: frozenset({INTERNAL_NETWORK}),
    NGINX: frozenset({INTERNAL_NETWORK, EDGE_NETWORK}),
    PROMETHEUS: frozenset({INTERNAL_NETWORK}),
    GRAFANA: frozenset({INTERNAL_NETWORK, EDGE_NETWORK}),
    NGINX_EXPORTER: frozenset({INTERNAL_NETWORK}),
    GPU_EXPORTER: frozenset({INTERNAL_NETWORK}),
}

# Roles allowed to publish host ports, and which container ports they may publish.
PUBLISHING_ROLES: Final[dict[str, frozenset[int]]] = {
    NGINX: frozenset({80, 443}),
    GRAFANA: frozenset({3000}),
}
