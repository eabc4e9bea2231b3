"""Scrape job names and the labels every target carries: shared by config, rules, dashboards."""

from __future__ import annotations

from llm_config.model import StackConfig

GATEWAY_JOB = "llm-gateway"
NGINX_JOB = "nginx"
GPU_JOB = "gpu"
PROMETHEUS_JOB = "prometheus"

# Labels that identify one stack (not one replica): alerts aggregate by these, so an
# alert names the stack it is about while replicas are summed away.
STACK_LABELS = ("job", "service", "stack")
BY_STACK = ", ".join(STACK_LABELS)

# The label of the gateway's routing metrics naming an Ollama instance (host:port).
# Not `instance`: that is the scrape target (the gateway replica) in Prometheus.
OLLAMA_INSTANCE = "ollama_instance"


def target_labels(config: StackConfig) -> dict[str, str]:
    """Labels added to every scraped target of this stack."""
    return {"service": config.name_prefix, "stack": config.environment}


def selector(job: str, *matchers: str) -> str:
    """`{job="...", matchers...}`: every query names its job, so two jobs never mix."""
    return "{" + ", ".join([f'job="{job}"', *matchers]) + "}"
