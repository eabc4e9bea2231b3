"""Rendered files: what the real nginx and promtool accept, private where secret."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess

import pytest
from llm_gateway.contract import digest_of
from llm_nginx import render_nginx_conf
from llm_stack.local.binaries import Binaries
from llm_stack.local.files import (
    check_nginx_conf,
    prepare_workdir,
    rendered_files,
    write_files,
)
from llm_stack.local.plan import redis_url
from llm_stack.local.tls import ensure_certificate

from tests.infra.local.conftest import SECRETS, PlanFactory


@pytest.mark.process
def test_written_files_pass_nginx_t_and_promtool(make: PlanFactory, binaries: Binaries) -> None:
    plan = make()
    prepare_workdir(plan)
    ensure_certificate(binaries.openssl, "localhost", plan.layout.cert, plan.layout.key)
    written = write_files(plan, SECRETS)
    check_nginx_conf(binaries.nginx, plan)  # raises with nginx's message if rejected
    promtool = shutil.which("promtool")
    assert promtool is not None
    result = subprocess.run(
        [promtool, "check", "config", str(plan.layout.prometheus / "prometheus.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(plan.layout.workdir.stat().st_mode) == 0o700


def test_nginx_conf_is_the_shared_renderers_output(make: PlanFactory) -> None:
    plan = make()
    files = rendered_files(plan, SECRETS)
    assert files[plan.layout.nginx_conf] == render_nginx_conf(plan.config, plan.nginx_topology)


def test_redis_conf_binds_loopback_with_the_password_and_config_limits(make: PlanFactory) -> None:
    plan = make()
    text = rendered_files(plan, SECRETS)[plan.layout.redis_conf]
    lines = text.splitlines()
    assert "bind 127.0.0.1" in lines
    assert "port 20379" in lines
    assert f'requirepass "{SECRETS.redis_password}"' in lines
    # The state server: its own size (tests/e2e/Pulumi.e2e.yaml), never evicts, persists.
    assert "maxmemory 32mb" in lines
    assert "maxmemory-policy noeviction" in lines
    assert "appendonly yes" in lines
    assert f'dir "{plan.layout.redis}"' in lines


def test_the_cache_has_its_own_redis_that_evicts_within_its_own_size(make: PlanFactory) -> None:
    plan = make()
    files = rendered_files(plan, SECRETS)
    lines = files[plan.layout.redis_cache_conf].splitlines()
    assert "bind 127.0.0.1" in lines
    assert "port 20380" in lines
    assert f'requirepass "{SECRETS.redis_password}"' in lines
    assert "maxmemory 64mb" in lines
    assert "maxmemory-policy allkeys-lru" in lines
    assert f'dir "{plan.layout.redis_cache}"' in lines
    [server] = [s for s in plan.services if s.name == "redis-cache"]
    assert server.argv[-1] == str(plan.layout.redis_cache_conf)
    assert server.port == 20380
    for gateway in (s for s in plan.services if s.role == "gateway"):
        assert gateway.env["GATEWAY_REDIS_URL"].endswith("@127.0.0.1:20379/0")
        assert gateway.env["GATEWAY_CACHE_REDIS_URL"].endswith("@127.0.0.1:20380/0")


def test_keys_file_has_the_dev_key_digest_and_the_stacks_plain_keys(make: PlanFactory) -> None:
    plan = make()
    keys = json.loads(rendered_files(plan, SECRETS)[plan.layout.keys_file])["keys"]
    assert keys["dev"] == {"digest": digest_of(SECRETS.dev_key)}
    # The local stack's admin key: the admin endpoints work by following the banner.
    assert keys["dev-admin"] == {"digest": digest_of(SECRETS.admin_key), "admin": True}
    assert SECRETS.admin_key not in json.dumps(keys)
    assert keys["limited"]["requestsPerMinute"] == 3
    assert SECRETS.dev_key not in json.dumps(keys)


def test_grafana_files_point_at_the_local_prometheus(make: PlanFactory) -> None:
    plan = make()
    files = rendered_files(plan, SECRETS)
    datasource = plan.layout.grafana_provisioning / "datasources" / "prometheus.yaml"
    assert "url: http://127.0.0.1:20909" in files[datasource]
    dashboards = [p for p in files if p.parent == plan.layout.grafana_dashboards]
    assert dashboards
    for path in dashboards:
        json.loads(files[path])


def test_the_usage_report_finds_the_state_redis_in_a_private_file(make: PlanFactory) -> None:
    plan = make()
    text = rendered_files(plan, SECRETS)[plan.layout.redis_url_file]
    assert text == redis_url(20379, SECRETS.redis_password) + "\n"


def test_a_restart_keeps_the_last_runs_logs(make: PlanFactory) -> None:
    plan = make()
    prepare_workdir(plan)
    gateway_log = plan.service("gateway-0").log
    gateway_log.write_text("first run\n")
    plan.layout.log("nginx-access").write_text('{"status":200}\n')
    prepare_workdir(plan)
    assert gateway_log.read_text() == ""
    assert gateway_log.with_name("gateway-0.log.1").read_text() == "first run\n"
    assert plan.layout.log("nginx-access").with_name("nginx-access.log.1").exists()
    assert stat.S_IMODE(gateway_log.stat().st_mode) == 0o600
