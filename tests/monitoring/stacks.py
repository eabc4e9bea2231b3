"""Stack configs for the monitoring tests, built through the real loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_config.load import load_stack_file, parse_stack_config
from llm_config.model import StackConfig

REPO = Path(__file__).resolve().parents[2]

# The labels every scraped series of the test stack carries (see jobs.target_labels).
SERVICE = "llm-test"
STACK = "test"


def stack_config(
    *,
    replicas: int = 2,
    gpus: int = 0,
    instances: int | None = None,
    routing: str = "least-conn",
    cache_mode: str = "deterministic",
    limits_fail_closed: bool = False,
    scrape_interval_seconds: int = 15,
    **alerts: Any,
) -> StackConfig:
    """A `test` stack; `alerts` override `monitoring.alerts` keys (camelCase)."""
    values: dict[str, Any] = {
        "environment": STACK,
        "namePrefix": SERVICE,
        "ollama": {
            "models": ["llama3.2:1b"],
            "instances": instances or max(1, gpus),
            "gpus": [str(i) for i in range(gpus)],
        },
        "gateway": {
            "replicas": replicas,
            "routing": routing,
            "cacheMode": cache_mode,
            "limitsFailClosed": limits_fail_closed,
        },
        "monitoring": {
            "scrapeIntervalSeconds": scrape_interval_seconds,
            "alerts": {
                "errorRatio": 0.05,
                "p95LatencySeconds": 30,
                "cacheHitRatioDrop": 0.5,
                "forMinutes": 5,
                "minRequests": 10,
                "shedRatio": 0.05,
                "modelLoadsPerHour": 20,
                **alerts,
            },
        },
    }
    return parse_stack_config(values, STACK)


def stack_file(name: str) -> StackConfig:
    """The config of a committed stack file (`dev`, `prod`)."""
    return load_stack_file(REPO / f"Pulumi.{name}.yaml")


def model_aware(config: StackConfig) -> StackConfig:
    """`config` with `gateway.routing: model-aware`, validated again like a stack file."""
    return with_routing(config, "model-aware")


def least_conn(config: StackConfig) -> StackConfig:
    """`config` with `gateway.routing: least-conn` (the nginx balancer routes)."""
    return with_routing(config, "least-conn")


def with_routing(config: StackConfig, routing: str) -> StackConfig:
    values = config.model_dump(by_alias=True)
    values["gateway"]["routing"] = routing
    return StackConfig.model_validate(values)
