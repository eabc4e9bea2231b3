"""prometheus.yml: what it scrapes, with which labels, and that Prometheus accepts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_config.model import StackConfig
from llm_monitoring.prometheus import (
    CONFIG_FILE_NAME,
    RULES_FILE_NAME,
    ScrapeTargets,
    prometheus_args,
    prometheus_files,
    render_prometheus_config,
)

from tests.monitoring.stacks import SERVICE, STACK, stack_config, stack_file
from tests.monitoring.tools import explain, promtool

TARGETS = ScrapeTargets(
    gateways=["gateway-1:8000", "gateway-2:8000"],
    nginx_exporter="nginx-exporter:9113",
    gpu_exporters=["dcgm-exporter:9400"],
    prometheus="localhost:9090",
)


def _write(files: dict[str, str]) -> None:
    for path, text in files.items():
        Path(path).write_text(text)


def _jobs(config: StackConfig, targets: ScrapeTargets) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(render_prometheus_config(config, targets))
    return {job["job_name"]: job for job in doc["scrape_configs"]}


@pytest.mark.process
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_rendered_config_and_rules_pass_promtool(tmp_path: Path, stack: str) -> None:
    files = prometheus_files(stack_file(stack), TARGETS, str(tmp_path))
    _write(files)
    result = promtool("check", "config", tmp_path / CONFIG_FILE_NAME)
    assert result.returncode == 0, explain(result)
    # The referenced rule file was found and checked too.
    assert str(tmp_path / RULES_FILE_NAME) in result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.process
def test_promtool_check_config_can_fail(tmp_path: Path) -> None:
    files = prometheus_files(stack_config(), TARGETS, str(tmp_path))
    config_path = str(tmp_path / CONFIG_FILE_NAME)
    doc = yaml.safe_load(files[config_path])
    doc["global"]["scrape_timeout"] = "60s"  # longer than the interval: invalid
    files[config_path] = yaml.safe_dump(doc)
    _write(files)
    assert promtool("check", "config", config_path).returncode != 0


def test_scrapes_every_service_with_stack_labels() -> None:
    jobs = _jobs(stack_config(), TARGETS)
    assert list(jobs) == ["llm-gateway", "nginx", "gpu", "prometheus"]
    expected = {
        "llm-gateway": ["gateway-1:8000", "gateway-2:8000"],
        "nginx": ["nginx-exporter:9113"],
        "gpu": ["dcgm-exporter:9400"],
        "prometheus": ["localhost:9090"],
    }
    for name, job in jobs.items():
        (static,) = job["static_configs"]
        assert static["targets"] == expected[name]
        assert static["labels"] == {"service": SERVICE, "stack": STACK}
        assert job["metrics_path"] == "/metrics"


def test_no_job_relabels_metrics() -> None:
    # The gateway names the Ollama instance `ollama_instance` itself (never `instance`,
    # the target's label): nothing to rename (the e2e routing test watches a real
    # Prometheus).
    jobs = _jobs(stack_config(), TARGETS)
    for name, job in jobs.items():
        assert "metric_relabel_configs" not in job, name


def test_no_gpu_or_nginx_job_without_their_exporters() -> None:
    targets = ScrapeTargets(
        gateways=["127.0.0.1:8000"], nginx_exporter=None, gpu_exporters=[],
        prometheus="127.0.0.1:9090",
    )  # fmt: skip
    assert list(_jobs(stack_config(), targets)) == ["llm-gateway", "prometheus"]


@pytest.mark.parametrize(("interval", "timeout"), [(1, "1s"), (15, "10s"), (60, "10s")])
def test_scrape_and_rule_intervals_follow_config(interval: int, timeout: str) -> None:
    doc = yaml.safe_load(
        render_prometheus_config(stack_config(scrape_interval_seconds=interval), TARGETS)
    )
    assert doc["global"] == {
        "scrape_interval": f"{interval}s",
        "scrape_timeout": timeout,
        "evaluation_interval": f"{interval}s",
    }


def test_rules_file_is_referenced_where_it_is_written() -> None:
    files = prometheus_files(stack_config(), TARGETS, "/etc/prometheus")
    assert set(files) == {"/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yml"}
    doc = yaml.safe_load(files["/etc/prometheus/prometheus.yml"])
    assert doc["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "alerting" not in doc


def test_alertmanagers_when_given() -> None:
    targets = ScrapeTargets(
        gateways=["g:8000"], nginx_exporter=None, gpu_exporters=[], prometheus="p:9090",
        alertmanagers=["alertmanager:9093"],
    )  # fmt: skip
    doc = yaml.safe_load(render_prometheus_config(stack_config(), targets))
    assert doc["alerting"] == {
        "alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]
    }


@pytest.mark.parametrize("bad", ["gateway", "gateway:", ":8000", "gateway:99999", "g:80x"])
def test_malformed_targets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        ScrapeTargets(gateways=[bad], nginx_exporter=None, gpu_exporters=[], prometheus="p:9090")


def test_at_least_one_gateway() -> None:
    with pytest.raises(ValueError, match="gateway"):
        ScrapeTargets(gateways=[], nginx_exporter=None, gpu_exporters=[], prometheus="p:9090")


def test_command_line_carries_retention() -> None:
    args = prometheus_args(stack_file("prod"), "/etc/prometheus/prometheus.yml", "/prometheus")
    assert args == [
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        "--storage.tsdb.retention.time=30d",
        "--web.listen-address=0.0.0.0:9090",
    ]
