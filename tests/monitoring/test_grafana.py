"""Grafana provisioning and the generated dashboards: valid, wired to the provisioned
datasource, every query parses (real promtool) and reads only metrics that exist."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_config.model import StackConfig
from llm_monitoring.dashboards import build_dashboards
from llm_monitoring.exporters import DCGM_METRICS, NGINX_METRICS, SCRAPE_METRICS
from llm_monitoring.grafana import (
    grafana_files,
    render_dashboard_provider,
    render_grafana_datasource,
)

from tests.monitoring.gateway_registry import family_samples
from tests.monitoring.promql_names import metric_names
from tests.monitoring.stacks import stack_config, stack_file
from tests.monitoring.tools import explain, promtool

PROMETHEUS_URL = "http://prometheus:9090"
# Grafana's range variable; promtool needs a real duration in its place.
GRAFANA_VARIABLES = {"$__rate_interval": "1m"}


def _stacks() -> dict[str, StackConfig]:
    return {"dev": stack_file("dev"), "prod": stack_file("prod"), "test": stack_config()}


def _dashboards(config: StackConfig) -> list[dict[str, Any]]:
    return [json.loads(text) for text in build_dashboards(config).values()]


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        if panel["type"] != "row":
            yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def _exprs(config: StackConfig) -> list[tuple[str, str]]:
    """(where, expr) of every query of every dashboard."""
    found = []
    for board in _dashboards(config):
        for panel in _panels(board):
            for target in panel["targets"]:
                found.append((f"{board['uid']}/{panel['title']}/{target['refId']}", target["expr"]))
    return found


def _promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def test_datasource_provisioning() -> None:
    doc = yaml.safe_load(render_grafana_datasource(stack_file("dev"), PROMETHEUS_URL))
    assert doc["apiVersion"] == 1
    (source,) = doc["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == PROMETHEUS_URL
    assert source["uid"]
    assert source["isDefault"] is True
    assert source["editable"] is False
    # $__rate_interval is only right if Grafana knows the real scrape interval.
    assert source["jsonData"]["timeInterval"] == "15s"


def test_dashboard_provider_points_at_the_dashboards() -> None:
    doc = yaml.safe_load(render_dashboard_provider("/var/lib/grafana/dashboards"))
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider["allowUiUpdates"] is False


def test_grafana_files_hold_everything_grafana_reads(tmp_path: Path) -> None:
    config = stack_file("prod")
    files = grafana_files(config, PROMETHEUS_URL, "/etc/grafana/provisioning", "/dashboards")
    assert set(files) == {
        "/etc/grafana/provisioning/datasources/prometheus.yaml",
        "/etc/grafana/provisioning/dashboards/llm-stack.yaml",
        *(f"/dashboards/{name}" for name in build_dashboards(config)),
    }
    provider = yaml.safe_load(files["/etc/grafana/provisioning/dashboards/llm-stack.yaml"])
    assert provider["providers"][0]["options"]["path"] == "/dashboards"


@pytest.mark.parametrize("stack", ["dev", "prod", "test"])
def test_dashboards_are_valid_and_use_the_provisioned_datasource(stack: str) -> None:
    config = _stacks()[stack]
    datasource = yaml.safe_load(render_grafana_datasource(config, PROMETHEUS_URL))
    uid = datasource["datasources"][0]["uid"]
    boards = _dashboards(config)
    assert boards
    assert len({b["uid"] for b in boards}) == len(boards)
    for board in boards:
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", board["uid"]), board["uid"]
        assert board["title"]
        assert isinstance(board["schemaVersion"], int)
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), "panel ids must be unique"
        panels = list(_panels(board))
        assert panels
        for panel in panels:
            where = f"{board['uid']}/{panel['title']}"
            assert panel["type"] in {"timeseries", "stat"}, where
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
            assert panel["description"], where
            grid = panel["gridPos"]
            assert grid["w"] > 0, where
            assert grid["h"] > 0, where
            assert grid["x"] + grid["w"] <= 24, where
            assert panel["targets"], where
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid, where
                assert target["expr"].strip(), where


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_query_parses_with_promtool(tmp_path: Path, stack: str) -> None:
    # Each query as a recording rule: `promtool check rules` parses it with the real
    # PromQL parser (and names the broken one if any fails).
    exprs = _exprs(_stacks()[stack])
    rules = [
        {"record": f"dashboard:query_{i}", "expr": _promql(e)} for i, (_, e) in enumerate(exprs)
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, explain(result)
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_parse_check_can_fail(tmp_path: Path) -> None:
    path = tmp_path / "queries.yml"
    rules = [{"record": "dashboard:bad", "expr": "sum(rate(llm_requests_total[1m])"}]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    assert promtool("check", "rules", path).returncode != 0


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_queries_read_only_metrics_that_exist(stack: str, gateway_metric_names: set[str]) -> None:
    known = gateway_metric_names | NGINX_METRICS | DCGM_METRICS | SCRAPE_METRICS
    for where, expr in _exprs(_stacks()[stack]):
        names = metric_names(_promql(expr))
        assert names, f"{where} reads no metric"
        assert names <= known, f"{where} reads unknown metrics {names - known}"
        gateway = {n for n in names if n.startswith("llm_")}
        assert gateway <= gateway_metric_names, where


def test_every_gateway_metric_is_charted() -> None:
    charted = set().union(*(metric_names(_promql(e)) for _, e in _exprs(stack_file("prod"))))
    # Build info is for humans reading /metrics; everything else has a panel.
    missing = {
        family
        for family, samples in family_samples().items()
        if not samples & charted and samples != {"llm_gateway_build_info"}
    }
    assert not missing, f"gateway metrics without a panel: {sorted(missing)}"


def test_gpu_panels_only_on_gpu_stacks() -> None:
    def dcgm(config: StackConfig) -> set[str]:
        return {n for _, e in _exprs(config) for n in metric_names(_promql(e))} & DCGM_METRICS

    assert not dcgm(stack_file("dev"))  # CPU-only
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"} <= dcgm(stack_file("prod"))


def test_the_panels_users_ask_for() -> None:
    titles = [p["title"] for b in _dashboards(stack_file("prod")) for p in _panels(b)]
    for wanted in (
        "Requests per minute by model",
        "Latency p50 / p95 / p99 (model-served)",
        "Time to first token p50 / p95 / p99",
        "Tokens generated per second by model",
        "Cache hit ratio",
        "Errors by reason",
        "In-flight requests by replica",
        "Rate-limited requests by key",
        "Auth failures",
        "Redis errors by operation",
        "Stale and coalesced serves per minute",
        "Nginx active connections",
        "Ollama reachable",
        "GPU utilisation",
    ):
        assert wanted in titles


def test_nginx_panel_says_stub_status_has_no_per_upstream_numbers() -> None:
    (board,) = _dashboards(stack_file("dev"))
    (panel,) = [p for p in _panels(board) if p["title"] == "Nginx active connections"]
    assert "no per-upstream" in panel["description"]


def test_thresholds_follow_the_alert_config() -> None:
    (board,) = _dashboards(stack_config(p95LatencySeconds=12))
    (panel,) = [p for p in _panels(board) if p["title"].startswith("Latency p50")]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": 12}


def test_rendering_is_deterministic() -> None:
    # Uploaded files replace containers when their text changes: no churn on re-render.
    config = stack_file("prod")
    assert build_dashboards(config) == build_dashboards(config)
    assert grafana_files(config, PROMETHEUS_URL) == grafana_files(config, PROMETHEUS_URL)
