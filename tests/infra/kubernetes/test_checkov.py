"""checkov over every manifest of the Kubernetes stacks: nothing fails but the checks
listed below, each with the reason it does not apply, and each still needed.

checkov runs from its own locked environment (checkov/README.md says why), offline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.kubernetes.manifests import manifests
from tests.infra.stack_run import StackRun

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process

CHECKOV_PROJECT = Path(__file__).parent / "checkov"

# Check id -> why the stack does not follow it. A check listed here that no longer
# fails fails the test: the list never outgrows what it excuses.
SKIPPED: dict[str, str] = {
    "CKV_K8S_43": (
        "Image should use digest: images are pinned to exact version tags in "
        "llm_config.images and the policy pack refuses 'latest' or untagged ones; a stack "
        "file may pin any image by digest (repo@sha256:...) instead, which the config "
        "accepts."
    ),
    "CKV_K8S_15": (
        "Image Pull Policy should be Always: with pinned images IfNotPresent starts the "
        "same image, and Always would make every restart of an Ollama or Redis pod "
        "depend on the registry answering."
    ),
    "CKV_K8S_35": (
        "Secrets as files rather than environment variables: the gateway's contract is "
        "its GATEWAY_* environment (GATEWAY_REDIS_URL carries the Redis password), so "
        "that one variable comes from a Secret by secretKeyRef, never a literal; the keys "
        "file is mounted as a file, and Redis reads its password from a file."
    ),
}


def run_checkov(directory: Path) -> dict[str, Any]:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH: checkov runs from its own uv project")
    result = subprocess.run(
        [
            uv,
            "run",
            "--frozen",
            "--quiet",
            "--project",
            str(CHECKOV_PROJECT),
            "checkov",
            "--directory",
            str(directory),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        # The first run installs checkov's environment.
        timeout=900,
        check=False,
    )
    # Exit 1 means "some check failed"; anything else is checkov itself failing.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.fixture(scope="module")
def report(
    k8s_run: StackRun,
    alt_run: StackRun,
    route_run: StackRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("manifests")
    scanned = []
    for tag, run in (("k8s", k8s_run), ("alt", alt_run), ("route", route_run)):
        for manifest in manifests(run):
            name = f"{tag}-{len(scanned):03d}-{manifest['kind']}.yaml"
            (directory / name).write_text(yaml.safe_dump(manifest, sort_keys=False))
            scanned.append(manifest)
    found = run_checkov(directory)
    found["scanned"] = scanned
    return found


@pytest.mark.timeout(900)
def test_checkov_reads_every_manifest(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 1000
    results = report["results"]
    checked = {c["resource"] for c in results["passed_checks"] + results["failed_checks"]}
    # checkov names a resource Kind.namespace.name (and checks each pod template too).
    expected = {
        f"{m['kind']}.{m['metadata']['namespace']}.{m['metadata']['name']}"
        for m in report["scanned"]
        if m["kind"] in ("Deployment", "StatefulSet", "Job", "Service", "ConfigMap", "Secret")
    }
    assert expected - checked == set()


@pytest.mark.timeout(900)
def test_nothing_fails_but_the_justified_skips(report: dict[str, Any]) -> None:
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    unexcused = sorted(
        f"{check} on {resource}" for check, resource in failed if check not in SKIPPED
    )
    assert unexcused == []
    stale = sorted(set(SKIPPED) - {check for check, _ in failed})
    assert stale == [], f"skips that nothing needs any more: {stale}"
    assert all(len(reason) > 80 for reason in SKIPPED.values())


@pytest.mark.timeout(900)
def test_checkov_finds_a_privileged_pod(tmp_path: Path, k8s_run: StackRun) -> None:
    """The scan can fail: one container made privileged and writable is reported."""
    deployment = next(m for m in manifests(k8s_run) if m["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"] |= {"privileged": True, "readOnlyRootFilesystem": False}
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump(deployment))
    failed = {c["check_id"] for c in run_checkov(tmp_path)["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_22"} <= failed
