"""`make up` / `preview` / `down`, run for real with stand-ins for docker, uv and pulumi.

Each run gets a PATH holding only the stand-ins (and mkdir), so what the Makefile does
on a machine without Docker, with a stopped engine, or with everything in place is
what happens here. `-o .venv/.synced` keeps make from syncing the venv; STATE_DIR
points into the temp dir. The uv stand-in runs the real bootstrap entry with this
interpreter (`uv run --frozen python -m ...` -> `python -m ...`); the pulumi
stand-in records its arguments and the passphrase it was given.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from llm_stack.bootstrap.pulumi_cli import install_dir, release_for

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process

REPO = Path(__file__).resolve().parent.parent


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _bin(tmp_path: Path, *, docker: str | None, pulumi: bool) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mkdir = shutil.which("mkdir")
    assert mkdir is not None
    (bin_dir / "mkdir").symlink_to(mkdir)
    # `uv run --frozen python ARGS...` -> this interpreter with ARGS.
    _script(bin_dir / "uv", f'#!/bin/sh\nshift 3\nexec "{sys.executable}" "$@"\n')
    if docker == "running":
        _script(bin_dir / "docker", "#!/bin/sh\nexit 0\n")
    elif docker == "stopped":
        _script(bin_dir / "docker", "#!/bin/sh\necho 'Cannot connect' >&2\nexit 1\n")
    if pulumi:
        _script(
            bin_dir / "pulumi",
            f"#!/bin/sh\n"
            f'echo "$* [passphrase=${{PULUMI_CONFIG_PASSPHRASE-unset}}]" >> "{tmp_path}/calls"\n'
            f'case "$*" in "stack output gatewayUrl"*) echo https://localhost:8443;; esac\n',
        )
    return bin_dir


def _make(tmp_path: Path, bin_dir: Path, *goals: str) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed")
    env = {k: v for k, v in os.environ.items() if k != "PULUMI_CONFIG_PASSPHRASE"}
    env["PATH"] = str(bin_dir)
    return subprocess.run(
        [make, "--no-print-directory", "-o", ".venv/.synced", *goals,
         f"STATE_DIR={tmp_path / 'state'}", f"TOOLS_DIR={tmp_path / '.tools'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _calls(tmp_path: Path) -> list[str]:
    calls = tmp_path / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("goal", ["up", "preview", "down"])
def test_without_docker_it_says_so_and_points_to_make_local(goal: str, tmp_path: Path) -> None:
    result = _make(tmp_path, _bin(tmp_path, docker=None, pulumi=True), goal)
    assert result.returncode != 0
    assert "no docker command" in result.stdout
    assert "`make local`" in result.stdout
    assert _calls(tmp_path) == []


def test_with_a_stopped_engine_it_says_so(tmp_path: Path) -> None:
    result = _make(tmp_path, _bin(tmp_path, docker="stopped", pulumi=True), "up")
    assert result.returncode != 0
    assert "its engine does not answer" in result.stdout
    assert _calls(tmp_path) == []


def test_up_runs_the_pulumi_the_bootstrap_finds(tmp_path: Path) -> None:
    result = _make(tmp_path, _bin(tmp_path, docker="running", pulumi=True), "up", "STACK=dev")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _calls(tmp_path) == [
        "stack select --create dev [passphrase=]",
        "up --stack dev --policy-pack infra/policy --yes [passphrase=]",
        "stack output gatewayUrl --stack dev [passphrase=]",
        "stack output grafanaUrl --stack dev [passphrase=]",
    ]
    assert "using the Pulumi CLI on your PATH" in result.stderr
    assert "PULUMI_CONFIG_PASSPHRASE is unset" in result.stdout
    assert "gateway: https://localhost:8443" in result.stdout
    assert (tmp_path / "state").is_dir()


def test_preview_and_down_use_the_same_pulumi(tmp_path: Path) -> None:
    bin_dir = _bin(tmp_path, docker="running", pulumi=True)
    assert _make(tmp_path, bin_dir, "preview", "STACK=prod").returncode == 0
    assert _make(tmp_path, bin_dir, "down", "STACK=prod").returncode == 0
    assert _calls(tmp_path) == [
        "preview --stack prod --policy-pack infra/policy [passphrase=]",
        "destroy --stack prod --yes --run-program [passphrase=]",
    ]


def test_up_uses_an_installed_release_and_says_how_to_reach_it(tmp_path: Path) -> None:
    """No pulumi on PATH, the pinned release already in TOOLS_DIR: used, no download."""
    bin_dir = _bin(tmp_path, docker="running", pulumi=False)
    release = release_for(platform.system(), platform.machine())
    installed = install_dir(tmp_path / ".tools", release)
    installed.mkdir(parents=True)
    _script(installed / "pulumi", f'#!/bin/sh\necho "$*" >> "{tmp_path}/calls"\n')
    result = _make(tmp_path, bin_dir, "up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _calls(tmp_path)[:2] == [
        "stack select --create dev",
        "up --stack dev --policy-pack infra/policy --yes",
    ]
    assert f"using Pulumi CLI v{release.version} from {installed}" in result.stderr
    assert f'export PATH="{installed}:$PATH"' in result.stdout


def test_a_failed_bootstrap_stops_before_pulumi(tmp_path: Path) -> None:
    """No pulumi on PATH and no way to fetch one: the bootstrap's error, then nothing."""
    bin_dir = _bin(tmp_path, docker="running", pulumi=False)
    # The stand-in uv fails the way the bootstrap does when its download fails.
    _script(bin_dir / "uv", "#!/bin/sh\necho 'pulumi-cli: error: could not fetch' >&2\nexit 1\n")
    result = _make(tmp_path, bin_dir, "up")
    assert result.returncode != 0
    assert "pulumi-cli: error: could not fetch" in result.stderr
    assert "+ pulumi" not in result.stdout
