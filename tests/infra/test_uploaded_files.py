"""What the program uploads into containers: exactly the renderers' text, and valid.

nginx.conf goes through the real `nginx -t` and prometheus.yml (with its rules)
through the real `promtool check config`, both on the bytes the program uploads.
Those files name container paths and container host names, so before the check the
test writes them under a temp dir and maps, textually and only these:

- the cert/key/runtime paths (/etc/nginx/tls/edge.*, /var/cache/nginx) and the rules
  path (/etc/prometheus/alerts.yml) -> files in the temp dir, holding the uploaded
  certificate, key and rules;
- container names (llm-dev-gateway-0, ...) -> distinct 127.0.1.x addresses, since
  nginx resolves upstream names while loading and Docker's DNS is absent here;
- `user nginx;` -> dropped (no such user here);
- the upstream `resolve` parameter -> dropped when the host's nginx is older than
  1.27.3 (Debian 12 ships 1.22; the deployed image, llm_config.images.NGINX, has it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from llm_config import StackConfig
from llm_nginx import CONTAINER_CERT_PATH, CONTAINER_KEY_PATH, CONTAINER_RUNTIME_DIR
from llm_stack.docker.edge import render_edge_conf
from llm_stack.docker.monitoring import (
    GRAFANA_PASSWORD_FILE,
    grafana_uploads,
    prometheus_uploads,
)
from llm_stack.docker.redis import CLI_PASSWORD_PATH, health_test
from llm_stack.shared.names import StackNames
from llm_stack.shared.redis import render_redis_conf

from tests.infra.stack_run import StackRun, prod_secrets
from tests.support.nginx_server import check_config, nginx_binary

PROMETHEUS_DIR = "/etc/prometheus"


def _addresses(run: StackRun, role: str, port: int) -> list[str]:
    """`name:port` of a role's containers in index order (registration order is async)."""
    names = sorted((str(c.plain("name")) for c in run.by_role(role)), key=_index)
    return [f"{name}:{port}" for name in names]


def _index(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def _nginx_version() -> tuple[int, ...]:
    out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, check=True)
    return tuple(int(p) for p in out.stderr.strip().split("/", 1)[1].split()[0].split("."))


def nginx_conf_for_this_host(run: StackRun, config: StackConfig, directory: Path) -> Path:
    """The uploaded nginx.conf, cert and key under `directory`, mapped as the module says."""
    nginx = run.container(StackNames.of(config).nginx)
    uploads = run.uploads(nginx)
    text = uploads["/etc/nginx/nginx.conf"]
    (directory / "edge.crt").write_text(uploads[CONTAINER_CERT_PATH])
    (directory / "edge.key").write_text(uploads[CONTAINER_KEY_PATH])
    (directory / "run").mkdir()
    text = text.replace(CONTAINER_CERT_PATH, str(directory / "edge.crt"))
    text = text.replace(CONTAINER_KEY_PATH, str(directory / "edge.key"))
    text = text.replace(CONTAINER_RUNTIME_DIR + "/", str(directory / "run") + "/")
    assert text.count("\nuser nginx;\n") == 1
    text = text.replace("\nuser nginx;\n", "\n")
    names = [c.plain("name") for c in run.containers]
    for index, name in enumerate(sorted(names, key=len, reverse=True)):
        text = re.sub(rf"\b{re.escape(name)}:", f"127.0.1.{index + 1}:", text)
    if _nginx_version() < (1, 27, 3):
        text = text.replace(" resolve;", ";")
    conf = directory / "nginx.conf"
    conf.write_text(text)
    return conf


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    for tool in ("nginx", "promtool"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} is not installed (run .ci/system-deps)")


# --- nginx ----------------------------------------------------------------------------


def test_nginx_conf_is_the_renderers_output(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, config = each_stack
    uploaded = run.uploads(run.container(StackNames.of(config).nginx))["/etc/nginx/nginx.conf"]
    gateways = _addresses(run, "gateway", config.gateway.port)
    ollamas = _addresses(run, "ollama", 11434)
    assert uploaded == render_edge_conf(config, gateways, ollamas)
    for address in [*gateways, *ollamas]:
        assert f"server {address} " in uploaded
    assert f"allow {config.network.internal_subnet};" in uploaded


@pytest.mark.process
def test_uploaded_nginx_conf_passes_nginx_t(
    each_stack: tuple[StackRun, StackConfig], tmp_path: Path
) -> None:
    run, config = each_stack
    conf = nginx_conf_for_this_host(run, config, tmp_path)
    check_config(conf, tmp_path)


@pytest.mark.process
def test_nginx_t_rejects_a_broken_upload(
    dev_run: StackRun, dev_config: StackConfig, tmp_path: Path
) -> None:
    """The check above can fail: the same mapping on a config missing a brace fails."""
    conf = nginx_conf_for_this_host(dev_run, dev_config, tmp_path)
    text = conf.read_text()
    conf.write_text(text[: text.rindex("}")])
    with pytest.raises(AssertionError, match="nginx -t rejected"):
        check_config(conf, tmp_path)


@pytest.mark.process
def test_nginx_t_rejects_a_key_that_does_not_match(
    dev_run: StackRun, dev_config: StackConfig, tmp_path: Path
) -> None:
    conf = nginx_conf_for_this_host(dev_run, dev_config, tmp_path)
    (tmp_path / "edge.key").write_text(prod_secrets()["tlsKey"])  # another cert's key
    with pytest.raises(AssertionError, match="nginx -t rejected"):
        check_config(conf, tmp_path)


# --- prometheus -----------------------------------------------------------------------


def test_prometheus_files_are_the_renderers_output(
    each_stack: tuple[StackRun, StackConfig],
) -> None:
    run, config = each_stack
    prometheus = run.container(StackNames.of(config).prometheus)
    gateways = _addresses(run, "gateway", config.gateway.port)
    assert run.uploads(prometheus) == prometheus_uploads(config, gateways)
    command = prometheus.plain("command")
    assert f"--config.file={PROMETHEUS_DIR}/prometheus.yml" in command
    assert f"--storage.tsdb.retention.time={config.monitoring.retention}" in command
    assert "--storage.tsdb.path=/prometheus" in command


def test_prometheus_scrapes_this_stacks_services(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, config = each_stack
    names = StackNames.of(config)
    prometheus = run.container(names.prometheus)
    doc = yaml.safe_load(run.uploads(prometheus)[f"{PROMETHEUS_DIR}/prometheus.yml"])
    targets = {
        target
        for job in doc["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    expected = {
        *_addresses(run, "gateway", config.gateway.port),
        f"{names.nginx_exporter}:9113",
        f"{names.prometheus}:9090",
    }
    if config.ollama.uses_gpus:
        expected.add(f"{names.gpu_exporter}:9400")
    assert targets == expected
    exporter = run.container(names.nginx_exporter)
    assert exporter.plain("command") == [
        f"--nginx.scrape-uri=http://{names.nginx}:{config.balancer.status_port}/stub_status"
    ]


def _promtool_check(directory: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for path, text in files.items():
        (directory / Path(path).name).write_text(
            text.replace(PROMETHEUS_DIR + "/", f"{directory}/")
        )
    return subprocess.run(
        ["promtool", "check", "config", str(directory / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.process
def test_uploaded_prometheus_config_and_rules_pass_promtool(
    each_stack: tuple[StackRun, StackConfig], tmp_path: Path
) -> None:
    run, config = each_stack
    files = run.uploads(run.container(StackNames.of(config).prometheus))
    result = _promtool_check(tmp_path, files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout  # the rules file was checked too


@pytest.mark.process
def test_promtool_rejects_broken_rules(
    dev_run: StackRun, dev_config: StackConfig, tmp_path: Path
) -> None:
    files = dict(dev_run.uploads(dev_run.container(StackNames.of(dev_config).prometheus)))
    files[f"{PROMETHEUS_DIR}/alerts.yml"] += "  - alert: Broken\n    expr: rate(\n"
    assert _promtool_check(tmp_path, files).returncode != 0


# --- grafana, redis, gateway keys -----------------------------------------------------


def test_grafana_files_are_the_renderers_output(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, config = each_stack
    names = StackNames.of(config)
    uploads = run.uploads(run.container(names.grafana))
    password = uploads.pop(GRAFANA_PASSWORD_FILE)  # the secret, see test_stack_graph
    assert password
    assert uploads == grafana_uploads(config)
    datasource = yaml.safe_load(uploads["/etc/grafana/provisioning/datasources/prometheus.yaml"])
    assert datasource["datasources"][0]["url"] == f"http://{names.prometheus}:9090"
    dashboards = [p for p in uploads if p.startswith("/etc/grafana/dashboards/")]
    assert dashboards
    for path in dashboards:
        assert json.loads(uploads[path])["panels"]
    provider = yaml.safe_load(uploads["/etc/grafana/provisioning/dashboards/llm-stack.yaml"])
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


def test_redis_conf(prod_run: StackRun, prod_config: StackConfig) -> None:
    redis = prod_run.container("llm-prod-redis")
    password = prod_secrets()["redisPassword"]
    conf = prod_run.uploads(redis)["/usr/local/etc/redis/redis.conf"]
    assert conf == render_redis_conf(prod_config, "state", password)
    assert "appendonly yes" in conf
    assert f"maxmemory {prod_config.redis.state.maxmemory_mb}mb" in conf
    assert "maxmemory-policy noeviction" in conf
    assert f'requirepass "{password}"' in conf
    assert redis.plain("command") == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert prod_run.uploads(redis)[CLI_PASSWORD_PATH] == password
    # redis-cli reads the password from that file at each check (run for real in
    # test_container_start.py); no environment variable holds it.
    assert redis.plain("healthcheck")["tests"] == health_test(CLI_PASSWORD_PATH)
    assert not redis.plain("envs")


def test_redis_conf_quotes_awkward_passwords(prod_config: StackConfig) -> None:
    conf = render_redis_conf(prod_config, "cache", 'a "quoted" \\ pass')
    assert 'requirepass "a \\"quoted\\" \\\\ pass"' in conf
