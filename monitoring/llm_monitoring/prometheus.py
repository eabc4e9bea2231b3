"""prometheus.yml (and the Prometheus command line), rendered from the stack config."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from llm_config.model import StackConfig

from llm_monitoring import yamltext
from llm_monitoring.jobs import (
    GATEWAY_JOB,
    GPU_JOB,
    NGINX_JOB,
    PROMETHEUS_JOB,
    target_labels,
)
from llm_monitoring.rules import render_alert_rules

CONFIG_FILE_NAME = "prometheus.yml"
RULES_FILE_NAME = "alerts.yml"


@dataclass(frozen=True)
class ScrapeTargets:
    """Where each scraped service answers, as Prometheus reaches it (`host:port`)."""

    gateways: Sequence[str]
    # nginx-prometheus-exporter, which reads nginx's stub_status page.
    nginx_exporter: str | None
    # DCGM exporters; empty when the stack has no GPUs.
    gpu_exporters: Sequence[str]
    prometheus: str
    # Rule files as Prometheus sees them (`prometheus_files` fills this in itself).
    rules_files: Sequence[str] = ()
    # Alertmanagers to send alerts to; without one, alerts show in Prometheus and Grafana.
    alertmanagers: Sequence[str] = ()

    def __post_init__(self) -> None:
        for target in [*self.gateways, *self.gpu_exporters, self.prometheus]:
            _check_target(target)
        if self.nginx_exporter is not None:
            _check_target(self.nginx_exporter)
        for target in self.alertmanagers:
            _check_target(target)
        if not self.gateways:
            raise ValueError("ScrapeTargets.gateways: at least one gateway replica")


def _check_target(target: str) -> None:
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"scrape target {target!r} is not host:port")


def _seconds(value: int) -> str:
    return f"{value}s"


def _job(name: str, targets: Sequence[str], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "job_name": name,
        "metrics_path": "/metrics",
        "static_configs": [{"targets": list(targets), "labels": dict(labels)}],
    }


def prometheus_config(config: StackConfig, targets: ScrapeTargets) -> dict[str, Any]:
    """prometheus.yml as data (see `render_prometheus_config`)."""
    interval = config.monitoring.scrape_interval_seconds
    labels = target_labels(config)
    gateway = _job(GATEWAY_JOB, targets.gateways, labels)
    jobs = [gateway]
    if targets.nginx_exporter is not None:
        jobs.append(_job(NGINX_JOB, [targets.nginx_exporter], labels))
    if targets.gpu_exporters:
        jobs.append(_job(GPU_JOB, targets.gpu_exporters, labels))
    jobs.append(_job(PROMETHEUS_JOB, [targets.prometheus], labels))
    doc: dict[str, Any] = {
        "global": {
            "scrape_interval": _seconds(interval),
            # A scrape may not outlast its interval (Prometheus refuses the config).
            "scrape_timeout": _seconds(min(10, interval)),
            # Rules see every scrape: `for:` durations then count in scrapes, not guesses.
            "evaluation_interval": _seconds(interval),
        },
        "rule_files": list(targets.rules_files),
        "scrape_configs": jobs,
    }
    if targets.alertmanagers:
        doc["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(targets.alertmanagers)}]}]
        }
    return doc


def render_prometheus_config(config: StackConfig, targets: ScrapeTargets) -> str:
    """The text of prometheus.yml for this stack."""
    return yamltext.dump(prometheus_config(config, targets))


def prometheus_files(
    config: StackConfig, targets: ScrapeTargets, config_dir: str
) -> dict[str, str]:
    """Path -> text of everything Prometheus reads: its config and the alert rules.

    `config_dir` is the directory as Prometheus sees it (`/etc/prometheus` in the
    container, a temp dir for the local stack); the rules file is referenced from there.
    """
    rules_path = posixpath.join(config_dir, RULES_FILE_NAME)
    with_rules = replace(targets, rules_files=[*targets.rules_files, rules_path])
    return {
        posixpath.join(config_dir, CONFIG_FILE_NAME): render_prometheus_config(config, with_rules),
        rules_path: render_alert_rules(config),
    }


def prometheus_args(
    config: StackConfig, config_file: str, data_dir: str, listen_address: str = "0.0.0.0:9090"
) -> list[str]:
    """Command-line flags of the prometheus binary (the same in the container and locally)."""
    return [
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--storage.tsdb.retention.time={config.monitoring.retention}",
        f"--web.listen-address={listen_address}",
    ]
