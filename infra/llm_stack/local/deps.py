"""`llm-stack local deps` (`make local-deps`): install the binaries the local stack runs.

Only what is missing, and it says what before it installs: a run on a machine that
has everything changes nothing. It never starts or stops a service of the host (a
system nginx or Redis keeps running: the local stack uses its own ports) and installs
no test or CI tool. Without root it prints the `sudo apt-get install` to run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from typing import TextIO

from llm_stack.local.binaries import PACKAGES, find_binary

Runner = Callable[[Sequence[str]], int]


def missing_packages(path: str | None = None) -> list[str]:
    """Debian packages of the local stack's binaries that are not installed."""
    return sorted({PACKAGES[name] for name in PACKAGES if find_binary(name, path) is None})


def _run(argv: Sequence[str]) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(list(argv), env=env, check=False).returncode


def install_missing(
    out: TextIO,
    *,
    path: str | None = None,
    is_root: bool | None = None,
    run: Runner = _run,
) -> int:
    """0 when everything is (now) installed; 1 when the user has to install it."""
    missing = missing_packages(path)
    if not missing:
        return 0
    listed = " ".join(missing)
    root = os.geteuid() == 0 if is_root is None else is_root
    if not root:
        print(f"llm-stack local deps: missing system packages: {listed}", file=out)
        print(f"  install them with: sudo apt-get install {listed}", file=out)
        return 1
    print(f"llm-stack local deps: installing system packages: {listed}", file=out, flush=True)
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        if run(argv) != 0:
            print(f"llm-stack local deps: `{' '.join(argv)}` failed", file=out)
            return 1
    return 0
