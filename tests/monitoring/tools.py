"""The real Prometheus binaries the monitoring tests drive."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (apt-get install prometheus)")
    return path


def promtool(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller asserts on returncode and output."""
    return subprocess.run(
        [binary("promtool"), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
