"""A newcomer's path on the local stack, live: the banner's commands work as pasted and
a restart keeps the keys (and the previous run's logs).

One stack, started twice in the same work dir (as `make local` twice would).
"""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.stack_process import LocalStackProcess
from tests.e2e.traffic import RunningStack, generate_body, poll


def _banner_lines(process: LocalStackProcess, needle: str) -> list[str]:
    return [line.strip() for line in process.console().splitlines() if needle in line]


def _sh(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", command], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_banner_commands_work_and_a_restart_keeps_the_keys(tmp_path: Path) -> None:
    workdir = tmp_path / "stack"
    first = LocalStackProcess(workdir).start()
    try:
        stack = RunningStack(first, first.wait_ready())
        admin_key = stack.outputs["devAdminApiKey"]
        with stack.client() as http:
            reply = http.post("/api/generate", json=generate_body())
            assert reply.status_code == 200, reply.text
            # The dev key is not an admin key; the admin key is.
            assert http.get("/admin/queue").status_code == 403
        # The admin lines of the banner, as pasted.
        (usage_curl,) = _banner_lines(first, "/admin/usage?since=7d&by=key")

        def dev_in_usage() -> bool | None:
            result = _sh(usage_curl + " -sS --fail-with-body")
            assert result.returncode == 0, result.stdout + result.stderr
            rows = json.loads(result.stdout)["rows"]
            return True if "dev" in {row["key"] for row in rows} else None

        poll(dev_in_usage, 30, "the dev key's request in /admin/usage")
        # The usage report line, as pasted: it reads the state Redis.
        (report,) = _banner_lines(first, "GATEWAY_REDIS_URL=")
        result = _sh(report + " --format json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)
        # Every log the run wrote something to (empty ones are not kept).
        before_logs = {p.name for p in (workdir / "logs").iterdir() if p.stat().st_size}
    finally:
        first.stop()

    second = LocalStackProcess(workdir).start()
    try:
        again = RunningStack(second, second.wait_ready())
        assert again.dev_key == stack.dev_key
        assert again.outputs["devAdminApiKey"] == admin_key
        with again.client() as http:
            assert http.post("/api/generate", json=generate_body()).status_code == 200
        with again.client(key=admin_key) as http:
            assert http.get("/admin/queue").status_code == 200
        assert "kept from" in second.console()
        logs = {p.name for p in (workdir / "logs").iterdir()}
        assert {f"{name}.1" for name in before_logs if name.endswith(".log")} <= logs
        previous = (workdir / "logs" / "gateway-0.log.1").read_text()
        assert previous.strip()
    finally:
        second.stop()


def test_a_client_that_trusts_the_ca_with_verify_reaches_the_stack(tmp_path: Path) -> None:
    """What docs/security.md shows for the official clients: verify=<the CA file>."""
    process = LocalStackProcess(tmp_path / "stack").start()
    try:
        stack = RunningStack(process, process.wait_ready())
        headers = {"Authorization": f"Bearer {stack.dev_key}"}
        ca = ssl.create_default_context(cafile=stack.local["caCert"])
        with httpx.Client(verify=ca, headers=headers, timeout=30) as http:
            assert http.get(f"{stack.url}/v1/models").status_code == 200
        with (
            httpx.Client(headers=headers, timeout=30) as untrusting,
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            untrusting.get(f"{stack.url}/v1/models")
    finally:
        process.stop()
