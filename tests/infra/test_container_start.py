"""What the Redis and Grafana containers run, run here for real.

No Docker runs here, so the commands the program declares run on this host with their
container paths mapped, textually and only those, to files in a temp dir:

- Redis: the uploaded redis.conf (its `dir /data` mapped) serves a real redis-server
  (port and bind overridden on its command line), and the declared healthcheck, with its password
  file path mapped and `-p <port>` added to redis-cli, must pass with the uploaded
  password file and fail with a wrong one. Passwords with quotes and backslashes too.
- Grafana: the start script runs under /bin/sh with a stand-in `grafana` CLI (records
  its argv and stdin, exits as told) and a stand-in for the image's /run.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from llm_config import StackConfig
from llm_stack.docker.monitoring import grafana_start_script
from llm_stack.docker.redis import CLI_PASSWORD_PATH, health_test
from llm_stack.shared.redis import render_redis_conf

from tests.infra.stack_run import StackRun, prod_secrets
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process

# --- Redis ------------------------------------------------------------------------------


def _run_healthcheck(check: list[str], port: int, password_file: Path) -> int:
    kind, command = check
    assert kind == "CMD-SHELL"
    assert command.count(CLI_PASSWORD_PATH) == 1
    assert command.count("redis-cli ") == 1
    command = command.replace(CLI_PASSWORD_PATH, str(password_file))
    command = command.replace("redis-cli ", f"redis-cli -p {port} ")
    result = subprocess.run(["/bin/sh", "-c", command], capture_output=True, timeout=30)
    return result.returncode


@pytest.mark.parametrize(
    "password", ["prod", 'a "quoted" \\ pass with spaces', "dollar$signs`and'quotes'"]
)
def test_the_redis_healthcheck_authenticates_with_the_uploaded_file(
    password: str, prod_run: StackRun, prod_config: StackConfig, tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail("redis-server/redis-cli are not installed (run .ci/system-deps)")
    redis = prod_run.container("llm-prod-redis")
    uploads = prod_run.uploads(redis)
    if password == "prod":
        password = prod_secrets()["redisPassword"]
        conf_text = uploads["/usr/local/etc/redis/redis.conf"]
        file_text = uploads[CLI_PASSWORD_PATH]
    else:
        conf_text = render_redis_conf(prod_config, "state", password)
        file_text = password
    assert conf_text.count('\ndir "/data"\n') == 1
    conf = tmp_path / "redis.conf"
    conf.write_text(conf_text.replace('\ndir "/data"\n', f"\ndir {tmp_path}\n"))
    password_file = tmp_path / "cli-password"
    password_file.write_text(file_text)
    wrong = tmp_path / "wrong-password"
    wrong.write_text(password + "x")
    port = free_port()
    argv = [
        "redis-server", str(conf),
        "--port", str(port), "--bind", "127.0.0.1",
        "--appendonly", "no", "--save", "",
    ]  # fmt: skip
    server = ManagedProcess(argv, port, tmp_path / "redis.log").start()
    try:
        check = redis.plain("healthcheck")["tests"]
        assert check == health_test()
        assert _run_healthcheck(check, port, password_file) == 0
        assert _run_healthcheck(check, port, wrong) != 0
        # No password at all: requirepass is in force.
        unauthenticated = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, timeout=30
        )
        assert "NOAUTH" in unauthenticated.stdout + unauthenticated.stderr
    finally:
        server.stop()


# --- Grafana ----------------------------------------------------------------------------

STAND_IN_CLI = """\
#!/bin/sh
printf '%s\\n' "$@" > "$RECORD_DIR/argv"
cat > "$RECORD_DIR/stdin"
echo "stand-in grafana cli"
exit "$CLI_EXIT"
"""

STAND_IN_RUN_SH = """\
#!/bin/sh
printf '%s\\n' "$@" > "$RECORD_DIR/run-argv"
echo "run.sh started"
exit 7
"""


def _start_grafana(tmp_path: Path, *, cli_exit: int) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("grafana", STAND_IN_CLI), ("run.sh", STAND_IN_RUN_SH)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    secret = tmp_path / "admin-password"
    secret.write_text("n3w-admin-pass-0123456789")
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RECORD_DIR": str(tmp_path),
        "CLI_EXIT": str(cli_exit),
        "GF_PATHS_HOME": "/usr/share/grafana",
        "GF_PATHS_CONFIG": "/etc/grafana/grafana.ini",
        "GF_SECURITY_ADMIN_PASSWORD__FILE": str(secret),
    }
    script = grafana_start_script(run_sh=str(bin_dir / "run.sh"))
    return subprocess.run(
        ["/bin/sh", "-c", script, "grafana-start", "extra-arg"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def test_grafana_start_resets_the_admin_password_from_the_file(tmp_path: Path) -> None:
    result = _start_grafana(tmp_path, cli_exit=0)
    # run.sh takes over (exec): its exit status and arguments are the container's.
    assert result.returncode == 7, result.stderr
    assert (tmp_path / "run-argv").read_text().splitlines() == ["extra-arg"]
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv == [
        "cli",
        "--homepath", "/usr/share/grafana",
        "--config", "/etc/grafana/grafana.ini",
        "admin", "reset-admin-password", "--password-from-stdin",
    ]  # fmt: skip
    # The password goes on stdin, never in argv (where `ps` would show it).
    assert (tmp_path / "stdin").read_text() == "n3w-admin-pass-0123456789"
    assert "admin password set from" in result.stdout
    assert "n3w-admin-pass" not in result.stdout + result.stderr


def test_grafana_start_goes_on_when_there_is_no_admin_yet(tmp_path: Path) -> None:
    """First start: the CLI fails (no admin user yet); the server must start anyway."""
    result = _start_grafana(tmp_path, cli_exit=1)
    assert result.returncode == 7, result.stderr
    assert "admin password not reset" in result.stdout
    assert "stand-in grafana cli" in result.stdout  # the CLI's own words, for the log


def test_grafana_runs_the_start_script(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, _ = each_stack
    (grafana,) = run.by_role("grafana")
    assert grafana.plain("entrypoints") == [
        "/bin/sh",
        "-c",
        grafana_start_script(),
        "grafana-start",
    ]
    assert grafana_start_script().rstrip().endswith('exec /run.sh "$@"')
