"""Monitoring on a cluster: our own Prometheus, or an existing Prometheus Operator's.

Without `kubernetes.prometheusOperator`, a Prometheus StatefulSet reads the Docker
stack's prometheus.yml and alert rules (`llm_monitoring`), with one difference: on a
cluster the gateway and nginx pods come and go, so their jobs find targets through the
DNS records of their headless Services (`dns_sd_configs`) instead of a fixed list; the
job names and target labels stay, so the same rules and dashboards apply. With an
operator, ServiceMonitors produce the same jobs and labels, and a PrometheusRule holds
the same rules. Either way the dashboards are ConfigMaps labelled for Grafana's
sidecar (kube-prometheus-stack), so a cluster that has Grafana shows them.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml
from llm_config.model import StackConfig
from llm_monitoring import yamltext
from llm_monitoring.dashboards import build_dashboards
from llm_monitoring.grafana import DASHBOARD_FOLDER
from llm_monitoring.jobs import GATEWAY_JOB, NGINX_JOB, target_labels
from llm_monitoring.prometheus import (
    CONFIG_FILE_NAME,
    RULES_FILE_NAME,
    ScrapeTargets,
    prometheus_args,
    prometheus_config,
)
from llm_monitoring.rules import render_alert_rules

from llm_stack.kubernetes import names as n
from llm_stack.kubernetes import workload as w
from llm_stack.shared.names import PROMETHEUS_PORT

CONFIG_DIR = "/etc/prometheus"
DATA_DIR = "/prometheus"
# kube-prometheus-stack's sidecar puts a dashboard in the folder this annotation names
# (when its folderAnnotation is set to it, as the chart's docs show).
FOLDER_ANNOTATION = "grafana_folder"


def scrape_targets(config: StackConfig) -> ScrapeTargets:
    names = n.KubeNames.of(config)
    return ScrapeTargets(
        gateways=[f"{names.fqdn(names.gateway)}:{config.gateway.port}"],
        nginx_exporter=f"{names.fqdn(names.object('nginx', 'metrics'))}:{n.NGINX_EXPORTER_PORT}",
        # The NVIDIA GPU operator runs the DCGM exporter on GPU nodes (with its own
        # ServiceMonitor); the stack does not run a second one.
        gpu_exporters=[],
        prometheus=f"localhost:{PROMETHEUS_PORT}",
        rules_files=[f"{CONFIG_DIR}/{RULES_FILE_NAME}"],
    )


def _discovered(job: dict[str, Any]) -> dict[str, Any]:
    """A static job turned into DNS discovery of the same names, keeping its labels."""
    (static,) = job.pop("static_configs")
    by_port: dict[int, list[str]] = {}
    for target in static["targets"]:
        host, _, port = target.rpartition(":")
        by_port.setdefault(int(port), []).append(host)
    job["dns_sd_configs"] = [
        {"names": hosts, "type": "A", "port": port} for port, hosts in sorted(by_port.items())
    ]
    job["relabel_configs"] = [
        {"target_label": key, "replacement": value}
        for key, value in sorted(static.get("labels", {}).items())
    ]
    return job


def prometheus_files(config: StackConfig) -> dict[str, str]:
    """File name -> text of the Prometheus ConfigMap: prometheus.yml and the rules."""
    doc = prometheus_config(config, scrape_targets(config))
    doc["scrape_configs"] = [
        _discovered(job) if job["job_name"] in (GATEWAY_JOB, NGINX_JOB) else job
        for job in doc["scrape_configs"]
    ]
    return {CONFIG_FILE_NAME: yamltext.dump(doc), RULES_FILE_NAME: render_alert_rules(config)}


def service_monitor_spec(
    config: StackConfig, job: str, port: str, namespace: str
) -> dict[str, Any]:
    names = n.KubeNames.of(config)
    relabel = [
        {"action": "replace", "targetLabel": key, "replacement": value}
        for key, value in sorted(target_labels(config).items())
    ]
    return {
        "jobLabel": n.JOB_LABEL,
        "selector": {"matchLabels": {n.INSTANCE_LABEL: names.prefix, n.JOB_LABEL: job}},
        "namespaceSelector": {"matchNames": [namespace]},
        "endpoints": [
            {
                "port": port,
                "path": "/metrics",
                "interval": f"{config.monitoring.scrape_interval_seconds}s",
                "relabelings": relabel,
            }
        ],
    }


class KubernetesMonitoring(pulumi.ComponentResource):
    prometheus: k8s.apps.v1.StatefulSet | None
    dashboards: k8s.core.v1.ConfigMap

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        namespace: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("llm-stack:kubernetes:Monitoring", name, None, opts)
        kube = config.kubernetes
        assert kube is not None
        names = n.KubeNames.of(config)
        child = pulumi.ResourceOptions(parent=self)
        self.dashboards = k8s.core.v1.ConfigMap(
            "dashboards",
            metadata=w.metadata(
                names,
                n.PROMETHEUS,
                names.object("dashboards"),
                namespace,
                labels={**names.labels(n.PROMETHEUS), n.GRAFANA_DASHBOARD_LABEL: "1"},
                annotations={FOLDER_ANNOTATION: DASHBOARD_FOLDER},
            ),
            data=build_dashboards(config),
            opts=child,
        )
        self.prometheus = None
        operator = kube.prometheus_operator
        if operator is not None:
            for job, port, role in (
                (GATEWAY_JOB, "http", n.GATEWAY),
                (NGINX_JOB, "metrics", n.EDGE),
            ):
                k8s.apiextensions.CustomResource(
                    f"{role}-servicemonitor",
                    api_version="monitoring.coreos.com/v1",
                    kind="ServiceMonitor",
                    metadata=w.metadata(
                        names,
                        role,
                        names.object(role),
                        namespace,
                        labels={**names.labels(role), **operator.labels},
                    ),
                    spec=service_monitor_spec(config, job, port, names.namespace),
                    opts=child,
                )
            rules = yaml.safe_load(render_alert_rules(config))
            k8s.apiextensions.CustomResource(
                "alert-rules",
                api_version="monitoring.coreos.com/v1",
                kind="PrometheusRule",
                metadata=w.metadata(
                    names,
                    n.PROMETHEUS,
                    names.object("alerts"),
                    namespace,
                    labels={**names.labels(n.PROMETHEUS), **operator.labels},
                ),
                spec={"groups": rules["groups"]},
                opts=child,
            )
            self.register_outputs({})
            return

        files = prometheus_files(config)
        config_map = k8s.core.v1.ConfigMap(
            "prometheus-config",
            metadata=w.metadata(
                names, n.PROMETHEUS, names.object(n.PROMETHEUS, "config"), namespace
            ),
            data=files,
            opts=child,
        )
        service = k8s.core.v1.Service(
            "prometheus",
            metadata=w.metadata(names, n.PROMETHEUS, names.prometheus, namespace),
            spec={
                "selector": names.selector(n.PROMETHEUS),
                "ports": [{"name": "http", "port": PROMETHEUS_PORT, "targetPort": "http"}],
            },
            opts=child,
        )
        claim: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": kube.prometheus_storage}},
        }
        if kube.storage_class is not None:
            claim["storageClassName"] = kube.storage_class
        container = {
            "name": n.PROMETHEUS,
            "image": config.monitoring.prometheus_image,
            "args": prometheus_args(config, f"{CONFIG_DIR}/{CONFIG_FILE_NAME}", DATA_DIR),
            "ports": [{"name": "http", "containerPort": PROMETHEUS_PORT}],
            "resources": w.role_resources(config, n.PROMETHEUS),
            # Replaying the write-ahead log after a restart takes a while.
            "startupProbe": w.startup_probe("/-/ready", "http", 600),
            "readinessProbe": w.http_probe("/-/ready", "http"),
            "livenessProbe": w.http_probe("/-/healthy", "http", period_seconds=30),
            "volumeMounts": [
                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                {"name": "data", "mountPath": DATA_DIR},
            ],
        }
        pod = w.pod_spec(
            w.USERS[n.PROMETHEUS],
            [container],
            volumes=[{"name": "config", "configMap": {"name": config_map.metadata.name}}],
        )
        self.prometheus = k8s.apps.v1.StatefulSet(
            "prometheus",
            metadata=w.metadata(names, n.PROMETHEUS, names.prometheus, namespace),
            spec={
                "serviceName": names.prometheus,
                "replicas": 1,
                "selector": {"matchLabels": names.selector(n.PROMETHEUS)},
                "template": w.pod_template(
                    names.labels(n.PROMETHEUS),
                    pod,
                    config_hash=w.text_hash(files[k] for k in sorted(files)),
                ),
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data", "labels": names.labels(n.PROMETHEUS)},
                        "spec": claim,
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[service]),
        )
        self.register_outputs({"prometheus": self.prometheus.metadata.name})
