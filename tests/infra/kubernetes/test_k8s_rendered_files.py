"""Config files on the cluster: exactly the renderers' text, and accepted by the real
tools (`nginx -t`, `promtool check config`), as the Docker stack's uploads are.

For `nginx -t` here, the cluster's DNS names are mapped to 127.0.1.x (nginx resolves
upstream names while loading and there is no cluster DNS), the TLS paths to a temp
dir, and the `resolve` parameter dropped when this host's nginx predates 1.27.3 (the
image, llm_config.images.NGINX, has it).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_config import StackConfig
from llm_monitoring.dashboards import build_dashboards
from llm_monitoring.rules import render_alert_rules
from llm_nginx import CONTAINER_RUNTIME_DIR
from llm_stack.kubernetes.edge import TLS_DIR, render_conf, topology
from llm_stack.kubernetes.monitoring import prometheus_files
from llm_stack.kubernetes.names import KubeNames
from llm_stack.shared.redis import render_redis_conf

from tests.infra.kubernetes.conftest import config_of
from tests.infra.kubernetes.manifests import kube_resources, named, of_kind
from tests.infra.kubernetes.stacks import K8S_SECRETS, alt_values, k8s_values
from tests.infra.stack_run import StackRun, tls_pair, unwrap
from tests.monitoring.tools import explain, promtool
from tests.support.nginx_server import check_config, nginx_binary


def _nginx_version() -> tuple[int, ...]:
    out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True, check=True)
    return tuple(int(p) for p in out.stderr.strip().split("/", 1)[1].split()[0].split("."))


def test_one_nginx_conf_for_edge_and_balancer(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, config = each_k8s
    names = KubeNames.of(config)
    conf = named(run, "ConfigMap", names.object("nginx", "conf"))
    assert conf["data"] == {"nginx.conf": render_conf(config)}
    text = conf["data"]["nginx.conf"]
    # Pods are re-resolved through the cluster DNS, addressed by their stable names.
    assert f"resolver {config.kubernetes.dns_resolver} valid=10s" in text  # type: ignore[union-attr]
    balancer = config.gateway.routing == "least-conn"
    for index in range(config.ollama.instances):
        assert (f"server {names.ollama_pod_host(index)}:11434 " in text) == balancer
    # A model-aware stack's edge has no balancer to render (the gateway routes).
    assert ("upstream llm_ollama" in text) == balancer
    assert (f"listen {config.balancer.port};" in text) == balancer
    assert "listen 8443 ssl;" in text
    assert "\nuser " not in text
    for deployment in of_kind(run, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        if "conf" in volumes:
            assert volumes["conf"]["configMap"]["name"] == conf["metadata"]["name"]


def nginx_conf_for_this_host(config: StackConfig, directory: Path) -> Path:
    pair = tls_pair("localhost")
    (directory / "tls.crt").write_text(pair.cert_pem)
    (directory / "tls.key").write_text(pair.key_pem)
    (directory / "run").mkdir()
    text = render_conf(config)
    text = text.replace(f"{TLS_DIR}/", f"{directory}/")
    text = text.replace(CONTAINER_RUNTIME_DIR + "/", f"{directory}/run/")
    t = topology(config)
    hosts = sorted({a.rsplit(":", 1)[0] for a in [*t.gateways, *t.ollamas]}, key=len, reverse=True)
    for index, host in enumerate(hosts):
        text = re.sub(rf"\b{re.escape(host)}:", f"127.0.1.{index + 1}:", text)
    if _nginx_version() < (1, 27, 3):
        text = text.replace(" resolve;", ";")
    conf = directory / "nginx.conf"
    conf.write_text(text)
    return conf


@pytest.mark.process
@pytest.mark.parametrize("values", [k8s_values, alt_values])
def test_the_cluster_nginx_conf_passes_nginx_t(values: Any, tmp_path: Path) -> None:
    check_config(nginx_conf_for_this_host(config_of(values()), tmp_path), tmp_path)


@pytest.mark.process
def test_nginx_t_can_fail_on_the_same_mapping(tmp_path: Path) -> None:
    conf = nginx_conf_for_this_host(config_of(k8s_values()), tmp_path)
    conf.write_text(conf.read_text().replace("listen 8443 ssl;", "listen 8443 ssl bogus;"))
    with pytest.raises(AssertionError, match="nginx -t rejected"):
        check_config(conf, tmp_path)


def test_prometheus_files_are_the_renderers(alt_run: StackRun) -> None:
    config = config_of(alt_values())
    names = KubeNames.of(config)
    data = named(alt_run, "ConfigMap", names.object("prometheus", "config"))["data"]
    assert data == prometheus_files(config)
    assert data["alerts.yml"] == render_alert_rules(config)
    doc = yaml.safe_load(data["prometheus.yml"])
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    # Gateway and nginx pods are found through their headless Services' DNS records,
    # with the labels the rules and dashboards select on.
    assert jobs["llm-gateway"]["dns_sd_configs"] == [
        {"names": ["llm-k8s-gateway.llm.svc.cluster.local"], "type": "A", "port": 8000}
    ]
    assert jobs["nginx"]["dns_sd_configs"] == [
        {"names": ["llm-k8s-nginx-metrics.llm.svc.cluster.local"], "type": "A", "port": 9113}
    ]
    assert {
        r["target_label"]: r["replacement"] for r in jobs["llm-gateway"]["relabel_configs"]
    } == {
        "service": "llm-k8s",
        "stack": "test",
    }
    assert doc["rule_files"] == ["/etc/prometheus/alerts.yml"]


@pytest.mark.process
def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    files = prometheus_files(config_of(alt_values()))
    for name, text in files.items():
        (tmp_path / name).write_text(
            text.replace("/etc/prometheus/", f"{tmp_path}/") if name == "prometheus.yml" else text
        )
    result = promtool("check", "config", tmp_path / "prometheus.yml")
    assert result.returncode == 0, explain(result)
    assert "SUCCESS" in result.stdout + result.stderr


def test_operator_gets_the_same_jobs_and_rules(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    monitors = {m["metadata"]["name"]: m for m in of_kind(k8s_run, "ServiceMonitor")}
    assert set(monitors) == {"llm-k8s-gateway", "llm-k8s-edge"}
    for monitor in monitors.values():
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["jobLabel"] == "llm-stack/job"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert {r["targetLabel"]: r["replacement"] for r in endpoint["relabelings"]} == {
            "service": "llm-k8s",
            "stack": "prod",
        }
    # Each monitor selects exactly the Service carrying its job's name.
    services = {s["metadata"]["name"]: s for s in of_kind(k8s_run, "Service")}
    for name, job in (("llm-k8s-gateway", "llm-gateway"), ("llm-k8s-nginx-metrics", "nginx")):
        assert services[name]["metadata"]["labels"]["llm-stack/job"] == job
    (rule,) = of_kind(k8s_run, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(render_alert_rules(config))
    assert not [m for m in of_kind(k8s_run, "StatefulSet") if "prometheus" in str(m)]


def test_dashboards_for_grafanas_sidecar(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, config = each_k8s
    dashboards = named(run, "ConfigMap", KubeNames.of(config).object("dashboards"))
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards["data"] == build_dashboards(config)


def test_redis_conf_is_the_docker_renderers(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    (secret,) = [
        r
        for r in kube_resources(k8s_run)
        if r.type == "kubernetes:core/v1:Secret"
        and r.plain("metadata")["name"].endswith("-redis-config")
    ]
    data = unwrap(secret.inputs["stringData"])
    assert data["redis.conf"] == render_redis_conf(config, "state", K8S_SECRETS["redisPassword"])
    assert data["cli-password"] == K8S_SECRETS["redisPassword"]
