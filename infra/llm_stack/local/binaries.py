"""The system binaries the local stack runs, found before anything starts.

Each one names the Debian package that provides it, so a missing binary is reported
with the exact install command. nginx lives in /usr/sbin, which is not on every
user's PATH, so the sbin directories are searched after PATH.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass

from llm_stack.local.errors import LocalStackError

SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
# binary -> Debian package
PACKAGES: dict[str, str] = {
    "redis-server": "redis-server",
    "nginx": "nginx",
    "prometheus": "prometheus",
    "prometheus-nginx-exporter": "prometheus-nginx-exporter",
    "openssl": "openssl",
}


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of everything the local stack executes."""

    redis_server: str
    nginx: str
    prometheus: str
    nginx_exporter: str
    openssl: str
    # The gateways and emulators run on this interpreter (`-m llm_gateway`, ...).
    python: str


def find_binary(name: str, path: str | None = None) -> str | None:
    search = path if path is not None else os.environ.get("PATH", "")
    return shutil.which(name, path=os.pathsep.join([search, *SBIN_DIRS]))


def find_binaries(path: str | None = None) -> Binaries:
    """All binaries, or a `LocalStackError` listing every missing one and its package."""
    found = {name: find_binary(name, path) for name in PACKAGES}
    missing = sorted(name for name, where in found.items() if where is None)
    if missing:
        packages = " ".join(sorted({PACKAGES[name] for name in missing}))
        raise LocalStackError(
            "missing binaries: "
            + ", ".join(f"{name} (Debian package {PACKAGES[name]})" for name in missing),
            f"sudo apt-get install {packages}",
        )

    def get(name: str) -> str:
        where = found[name]
        assert where is not None  # checked above
        return where

    return Binaries(
        redis_server=get("redis-server"),
        nginx=get("nginx"),
        prometheus=get("prometheus"),
        nginx_exporter=get("prometheus-nginx-exporter"),
        openssl=get("openssl"),
        python=sys.executable,
    )
