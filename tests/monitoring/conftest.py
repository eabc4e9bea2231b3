"""Fixtures of the monitoring tests."""

from __future__ import annotations

import pytest

from tests.monitoring.gateway_registry import exported_names


@pytest.fixture(scope="session")
def gateway_metric_names() -> set[str]:
    """Every series name a real `GatewayMetrics` registry exports."""
    return exported_names()
