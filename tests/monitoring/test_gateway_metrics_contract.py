"""The gateway's metric names and help texts pass Prometheus's own linter."""

from __future__ import annotations

import pytest

from tests.monitoring.gateway_registry import exported_names, exposition
from tests.monitoring.tools import explain, promtool

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process


def test_promtool_check_metrics_is_clean() -> None:
    text = exposition()
    assert "llm_requests_total{" in text  # the registry really has samples
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, explain(result)
    assert result.stdout.strip() == "", result.stdout


def test_promtool_check_metrics_can_fail() -> None:
    bad = "# HELP llm_things A counter without _total.\n# TYPE llm_things counter\nllm_things 1\n"
    result = promtool("check", "metrics", stdin=bad)
    assert result.returncode != 0, explain(result)
    assert '"_total" suffix' in result.stdout + result.stderr


def test_names_the_rules_and_dashboards_rely_on() -> None:
    names = exported_names()
    for name in (
        "llm_requests_total",
        "llm_request_duration_seconds_bucket",
        "llm_request_duration_seconds_count",
        "llm_cache_hits_total",
        "llm_cache_misses_total",
        "llm_upstream_up",
        "llm_redis_errors_total",
        "llm_in_flight_requests",
        # Model-aware routing and usage per key.
        "llm_queue_depth",
        "llm_queue_wait_seconds_bucket",
        "llm_queue_wait_seconds_count",
        "llm_shed_total",
        "llm_instance_up",
        "llm_instance_drain_state",
        "llm_instance_in_flight",
        "llm_instance_model_loaded",
        "llm_model_loads_total",
        "llm_upstream_retries_total",
        "llm_key_tokens_total",
    ):
        assert name in names
