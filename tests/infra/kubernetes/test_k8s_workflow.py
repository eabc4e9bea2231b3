"""The workflow previews the Kubernetes stack too, with the policy pack, after the tests.

(actionlint over the whole workflow is tests/infra/test_workflows.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]


def _job() -> dict[str, Any]:
    workflow = yaml.safe_load((REPO / ".github/workflows/infra.yml").read_text())
    job: dict[str, Any] = workflow["jobs"]["preview-kubernetes"]
    return job


def test_the_k8s_stack_is_previewed_after_the_tests() -> None:
    job = _job()
    assert job["needs"] == "test"
    (pulumi,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@")]
    assert pulumi["uses"] == "pulumi/actions@v7"
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["stack-name"] == "k8s"
    assert pulumi["with"]["policyPacks"] == "infra/policy"
    assert (REPO / "Pulumi.k8s.yaml").exists()


def test_the_cluster_credentials_come_from_a_secret() -> None:
    job = _job()
    assert job["environment"] == "k8s"
    assert job["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    (kube,) = [s for s in job["steps"] if s.get("name", "").startswith("Kubeconfig")]
    assert kube["env"]["KUBECONFIG_CONTENT"] == "${{ secrets.KUBECONFIG }}"
    # Written through the environment, never interpolated into the script.
    assert "secrets." not in kube["run"]
    assert "umask 077" in kube["run"]
