"""Every command docs/operations.md gives is exercised here, or by the test it names.

The commands are the lines of its `sh` blocks. Each must match one of CHECKS, so a
command added to the runbook without a check fails this test. What this machine can
run is run (the key minting, the drain CLI against a gateway that is not there, make's
dry run); `pulumi up` runs the real program under mocks (tests/infra, as here for the
hooks the runbook relies on); the local reload is the bench's own command, which
`make bench-rollout` runs for real.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from llm_stack.docker.rollout import ADMIN_KEY_ENV, DRAIN_HOOK, READMIT_HOOK, SKIP_ENV
from llm_stack.local.layout import Layout

from bench.rollout.stack import reload_argv
from tests.infra.stack_run import run_stack, stack_values
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "operations.md"


def commands() -> list[str]:
    text = DOC.read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=120, check=False
    )


def check_admin_key(command: str) -> None:
    # The variable the hooks read, passed on to `docker exec` by name.
    assert command.startswith(f"export {ADMIN_KEY_ENV}=llmsk-")
    text = DOC.read_text()
    assert SKIP_ENV in text


def check_pulumi_up(command: str) -> None:
    assert command == "pulumi up"
    run = run_stack("dev", stack_values("dev"))
    instances = run.by_role("ollama")
    assert instances
    for instance in instances:
        assert instance.options.hooks == {
            "before_delete": (DRAIN_HOOK,),
            "after_create": (READMIT_HOOK,),
        }


def check_keys_new(command: str) -> None:
    argv = shlex.split(command)
    assert argv[:3] == ["llm-gateway", "keys", "new"]
    result = _run("-m", "llm_gateway", *argv[1:])
    assert result.returncode == 0, result.stderr
    assert "pulumi config set --secret --path 'apiKeys.team-a.digest' " in result.stdout


def check_config_set_digest(command: str) -> None:
    # What `llm-gateway keys new` prints (checked above), with the digest left out.
    assert command == "pulumi config set --secret --path 'apiKeys.team-a.digest' <digest>"


def check_local_reload(command: str) -> None:
    # The reload the bench runs for real, for `make local`'s default work dir.
    assert shlex.split(command) == reload_argv(Layout(Path(".local-stack/dev")))


def check_drain(command: str) -> None:
    argv = shlex.split(command)
    assert argv[:2] == ["llm-gateway", "drain"]
    # Run for real against a port nothing listens on: the arguments are accepted (argparse
    # would exit 2) and the CLI reports the unreachable gateway (exit 1).
    port = free_port()
    argv = [a.replace("http://127.0.0.1:8000", f"http://127.0.0.1:{port}") for a in argv]
    result = _run("-m", "llm_gateway", *argv[1:])
    assert result.returncode == 1, result.stderr
    assert "cannot reach the gateway" in result.stderr


def check_bench(command: str) -> None:
    assert command == "make bench-rollout"
    result = subprocess.run(
        ["make", "-n", "-o", "system-deps", "-o", ".venv/.synced", "bench-rollout"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "python -m bench.rollout" in result.stdout


CHECKS: list[tuple[str, Callable[[str], None]]] = [
    (f"export {ADMIN_KEY_ENV}=", check_admin_key),
    ("pulumi up", check_pulumi_up),
    ("llm-gateway keys new", check_keys_new),
    ("pulumi config set --secret --path 'apiKeys.", check_config_set_digest),
    ("nginx -p ", check_local_reload),
    ("llm-gateway drain ", check_drain),
    ("make bench-rollout", check_bench),
]


@pytest.mark.process  # some checks run the CLI (tests/support/tiers.py)
def test_every_command_of_the_runbook_is_exercised() -> None:
    found = commands()
    assert len(found) >= 7
    for command in found:
        matching = [check for prefix, check in CHECKS if command.startswith(prefix)]
        assert len(matching) == 1, f"no check for the runbook command {command!r}"
        matching[0](command)
