"""Fixtures of the monitoring tests."""

from __future__ import annotations

import pytest

from tests.monitoring.gateway_registry import exported_names
from tests.support.gateway import gateway_factory

__all__ = ["gateway_factory"]  # the real gateway process fixture, for the e2e tests


@pytest.fixture(scope="session")
def gateway_metric_names() -> set[str]:
    """Every series name a real `GatewayMetrics` registry exports."""
    return exported_names()
