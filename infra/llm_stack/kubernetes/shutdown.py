"""How long each terminating pod keeps serving: preStop waits and grace periods.

A pod that is deleted (a rollout, a scale-down, a node drain) leaves the Service
endpoints at once, but whoever sends to it learns that late: nginx re-resolves the
gateway's name every `RESOLVER_VALID_SECONDS`, CoreDNS answers from a cache for a few
seconds more, and a load balancer or a Gateway's proxies take their own time. So each
pod first keeps accepting for a while (preStop), then finishes what it carries; the
grace period covers both, sized to the longest generation (`generation_seconds`),
since a generation cut at the end of the grace period cannot be retried.
"""

from __future__ import annotations

from typing import Final

from llm_config.model import StackConfig
from llm_nginx import RESOLVER_VALID_SECONDS

# CoreDNS's `kubernetes` plugin answers with a 5 s TTL; endpoint changes reach it in a
# few seconds more.
CLUSTER_DNS_SECONDS: Final = 5 + 3
# A terminating gateway keeps accepting until every nginx has re-resolved its name.
GATEWAY_PRE_STOP_SECONDS: Final = RESOLVER_VALID_SECONDS + CLUSTER_DNS_SECONDS + 2
# The gateway's own poll of Ollama names (aiohttp's DNS cache) works the same way: a
# drained Ollama pod keeps serving this long after its drain ended, for safety.
OLLAMA_DNS_SECONDS: Final = 10 + CLUSTER_DNS_SECONDS
# Slack for the process's own exit after its last request (flushes, the exporter).
EXIT_SECONDS: Final = 15


def generation_seconds(config: StackConfig) -> int:
    """The longest generation a terminating pod lets finish."""
    kube = config.kubernetes
    assert kube is not None
    configured = kube.shutdown.generation_seconds
    return configured if configured is not None else int(config.gateway.timeouts.total_seconds)


def gateway_grace_seconds(config: StackConfig) -> int:
    """preStop, then uvicorn's drain (shutdownGraceSeconds), then the exit."""
    return GATEWAY_PRE_STOP_SECONDS + int(config.gateway.shutdown_grace_seconds) + EXIT_SECONDS


def edge_grace_seconds(config: StackConfig) -> int:
    """preStop, then nginx's graceful stop (SIGQUIT: every open request finishes)."""
    kube = config.kubernetes
    assert kube is not None
    return kube.shutdown.edge_pre_stop_seconds + generation_seconds(config) + EXIT_SECONDS


def drain_timeout_seconds(config: StackConfig) -> int:
    """How long a stopping Ollama pod waits for the gateway to report it idle."""
    return generation_seconds(config)


def ollama_grace_seconds(config: StackConfig) -> int:
    """The drain (new requests go elsewhere, in-flight ones finish), then the stop."""
    return OLLAMA_DNS_SECONDS + drain_timeout_seconds(config) + EXIT_SECONDS
