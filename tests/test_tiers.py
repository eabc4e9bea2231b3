"""The tiers hold: a test not marked `process` cannot start one, and the marks are derived
from what a test uses (tests/support/tiers.py)."""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import tiers


def test_an_unmarked_test_cannot_start_a_process() -> None:
    with pytest.raises(tiers.UnmarkedProcess, match="not marked `process`"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)
    with pytest.raises(tiers.UnmarkedProcess):
        os.fork()


async def test_an_unmarked_test_cannot_start_an_asyncio_subprocess() -> None:
    with pytest.raises(tiers.UnmarkedProcess):
        await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")


@pytest.mark.process
def test_a_process_test_may_start_one() -> None:
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0


def test_the_guard_restores_what_it_replaced() -> None:
    # This test itself runs guarded, so compare the block's own before and after.
    before = subprocess.Popen._execute_child  # type: ignore[attr-defined]
    with tiers.no_processes():
        assert subprocess.Popen._execute_child is not before  # type: ignore[attr-defined]
    assert subprocess.Popen._execute_child is before  # type: ignore[attr-defined]


class _Item:
    """Just what derive_marks reads of a pytest.Item."""

    def __init__(self, path: Path, fixturenames: list[str]) -> None:
        self.path = path
        self.fixturenames = fixturenames
        self.marks: list[str] = []

    def get_closest_marker(self, name: str) -> Any:
        return name if name in self.marks else None

    def add_marker(self, mark: Any) -> None:
        self.marks.append(mark.name)


def test_marks_come_from_fixtures_and_the_stack_directories() -> None:
    tests = Path(__file__).resolve().parent
    pure = _Item(tests / "gateway" / "test_x.py", ["tmp_path"])
    server = _Item(tests / "gateway" / "test_x.py", ["tmp_path", "redis_server"])
    stack = _Item(tests / "e2e" / "test_x.py", ["tmp_path"])
    tiers.derive_marks([pure, server, stack])  # type: ignore[list-item]
    assert pure.marks == []
    assert server.marks == ["process"]
    assert stack.marks == ["stack", "process"]


def test_every_process_fixture_exists() -> None:
    """A renamed fixture would silently stop marking its tests (the guard would then
    fail them, but say so here first)."""
    from tests import conftest

    defined = {
        name for plugin in conftest.pytest_plugins for name in vars(importlib.import_module(plugin))
    }
    assert not tiers.PROCESS_FIXTURES - defined
