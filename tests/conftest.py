"""Shared fixtures: real servers on loopback, started and stopped by the tests; the tiers
(`process`, `stack`, `slow`) derived and guarded by tests/support/tiers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import tiers

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.emulator",
    "tests.support.gateway",
    "tests.support.nginx_server",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tiers.derive_marks(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with tiers.guarded(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with tiers.guarded(item):
        return (yield)
