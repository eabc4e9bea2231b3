"""What a newcomer trips on: keys kept across restarts, `make local` leaving the host
alone, and a banner that says how to reach the admin endpoints and the usage report."""

from __future__ import annotations

import io
import json
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from llm_stack.local.binaries import PACKAGES
from llm_stack.local.console import how_to_use
from llm_stack.local.credentials import load_or_mint
from llm_stack.local.deps import install_missing, missing_packages

from tests.infra.local.conftest import REPO, SECRETS, PlanFactory


def test_first_run_mints_and_keeps_credentials_privately(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    first, kept = load_or_mint(path)
    assert not kept
    assert first.dev_key.startswith("llmsk-")
    assert first.admin_key.startswith("llmsk-")
    assert first.admin_key != first.dev_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, kept = load_or_mint(path)
    assert kept
    assert again == first


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"devKey": "x"}'])
def test_an_unusable_credentials_file_gets_new_ones(tmp_path: Path, text: str) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(text)
    minted, kept = load_or_mint(path)
    assert not kept
    assert json.loads(path.read_text())["devKey"] == minted.dev_key


# ---- local-deps ------------------------------------------------------------------------


def test_nothing_missing_means_nothing_runs(tmp_path: Path) -> None:
    calls: list[Sequence[str]] = []
    out = io.StringIO()
    assert install_missing(out, run=lambda argv: calls.append(argv) or 0) == 0
    assert calls == []
    assert out.getvalue() == ""


def test_without_root_it_names_the_packages_and_installs_nothing(tmp_path: Path) -> None:
    calls: list[Sequence[str]] = []
    out = io.StringIO()
    status = install_missing(
        out, path=str(tmp_path), is_root=False, run=lambda argv: calls.append(argv) or 0
    )
    missing = missing_packages(str(tmp_path))
    assert "redis-server" in missing  # /usr/bin, not on this PATH or in an sbin dir
    assert status == 1
    assert calls == []
    assert f"sudo apt-get install {' '.join(missing)}" in out.getvalue()


def test_as_root_it_says_what_it_installs_and_only_installs(tmp_path: Path) -> None:
    calls: list[Sequence[str]] = []
    out = io.StringIO()
    status = install_missing(
        out, path=str(tmp_path), is_root=True, run=lambda argv: calls.append(argv) or 0
    )
    missing = missing_packages(str(tmp_path))
    assert status == 0
    assert f"installing system packages: {' '.join(missing)}" in out.getvalue()
    assert [list(argv[:2]) for argv in calls] == [["apt-get", "update"], ["apt-get", "install"]]
    assert list(calls[1][-len(missing) :]) == missing
    assert set(missing) <= set(PACKAGES.values())


@pytest.mark.process
def test_make_local_neither_stops_services_nor_installs_ci_tools() -> None:
    dry = subprocess.run(
        ["make", "-n", "-B", "local"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "llm-stack local deps" in dry
    assert "system-deps" not in dry
    assert "service" not in dry
    assert "npm" not in dry
    # CI keeps its step.
    ci = subprocess.run(
        ["make", "-n", "-B", "unit"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "bash .ci/system-deps" in ci


# ---- the banner -------------------------------------------------------------------------


def test_the_banner_says_how_to_reach_the_admin_endpoints_and_the_usage_report(
    make: PlanFactory,
) -> None:
    plan = make()
    text = "\n".join(how_to_use(plan, SECRETS))
    assert f'/admin/usage?since=7d&by=key\' -H "Authorization: Bearer {SECRETS.admin_key}"' in text
    assert f'GATEWAY_REDIS_URL="$(cat {plan.layout.redis_url_file})"' in text
    assert "usage --since 7d --by model" in text
    # The Redis password itself is never printed; the file holds it.
    assert SECRETS.redis_password not in text
    assert f'ssl.create_default_context(cafile="{plan.layout.cert}")' in text
    assert "verify=ca" in text
