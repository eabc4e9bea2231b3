"""The test tiers: which tests start a process, and a guard that keeps the marks true.

Markers (registered in pyproject.toml, `--strict-markers`):

- `process`: the test starts a child process (a server such as redis-server, nginx, the
  emulator or a gateway; a binary such as promtool or `nginx -t`; the project's CLI).
- `stack`: the test runs against the whole local stack (`tests/e2e`, `tests/live`,
  `tests/bench`); every `stack` test is a `process` test too.
- `slow`: the test takes seconds of pure CPU (many hypothesis examples, large graphs).

A test gets `process` from the fixtures it uses (any fixture named in `PROCESS_FIXTURES`,
directly or through other fixtures) or from its module's `pytestmark`. The guard makes
the mark complete: while a test that is not marked `process` sets up or runs, starting
a child process raises `UnmarkedProcess`, so `make test-fast` (`-m "not process and not
slow"`) truly starts nothing, and a new test that forgets its mark fails in every run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# Fixtures that start a process when they are set up (the fixtures built on them are
# found through pytest's fixture closure).
PROCESS_FIXTURES = frozenset(
    {
        "redis_server",
        "own_redis",
        "_session_emulator",
        "emulator_factory",
        "gateway_factory",
        "nginx_factory",
    }
)


# Every test under these directories runs against the whole local stack.
STACK_DIRS = ("e2e", "live", "bench")
_TESTS = Path(__file__).resolve().parent.parent


class UnmarkedProcess(RuntimeError):
    """A test not marked `process` tried to start a child process."""


def derive_marks(items: list[pytest.Item]) -> None:
    """`stack` for the tests under STACK_DIRS; `process` for every `stack` test and every
    test that uses a process fixture."""
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(_TESTS) and path.relative_to(_TESTS).parts[0] in STACK_DIRS:
            item.add_marker(pytest.mark.stack)
        names = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("stack") is not None or names & PROCESS_FIXTURES:
            item.add_marker(pytest.mark.process)


def _refuse(what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise UnmarkedProcess(
            f"this test starts a process ({what}: {args[:2]!r}) but is not marked "
            "`process`: request a fixture from tests/support (see PROCESS_FIXTURES) or "
            "set `pytestmark = pytest.mark.process` in its module (docs/development.md)"
        )

    return refuse


@contextmanager
def no_processes() -> Iterator[None]:
    """Within this block, every way this interpreter starts a child process raises.

    `subprocess.Popen._execute_child` is where subprocess.run/Popen and asyncio's
    subprocesses end up; `os.fork` covers multiprocessing's fork start method and
    `os.posix_spawn*` what spawns without subprocess."""
    patches: list[tuple[Any, str, Any]] = [
        (subprocess.Popen, "_execute_child", _refuse("subprocess")),
        (os, "fork", _refuse("os.fork")),
    ]
    patches += [(os, name, _refuse(f"os.{name}")) for name in ("posix_spawn", "posix_spawnp")]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


@contextmanager
def guarded(item: pytest.Item) -> Iterator[None]:
    """The guard around one phase of `item`: none for `process` tests."""
    if item.get_closest_marker("process") is not None:
        yield
        return
    with no_processes():
        yield
