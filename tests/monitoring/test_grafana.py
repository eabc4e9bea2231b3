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

from tests.monitoring.gateway_registry import family_samples, unknown_labels
from tests.monitoring.promql_names import label_names, metric_names
from tests.monitoring.stacks import least_conn, model_aware, stack_config, stack_file
from tests.monitoring.tools import explain, promtool

PROMETHEUS_URL = "http://prometheus:9090"
# Grafana's range variables; promtool needs a real duration in their place.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h"}
PANEL_TYPES = {"timeseries", "stat", "bargauge", "state-timeline"}
# Gateway metrics labelled with an Ollama instance (stored as `ollama_instance`).
PER_INSTANCE = {
    "llm_instance_up",
    "llm_instance_in_flight",
    "llm_instance_model_loaded",
    "llm_model_loads_total",
    "llm_affinity_hits_total",
    "llm_prompt_tokens_estimated_total",
}
STACKS = ["dev", "prod", "routing"]


def _stacks() -> dict[str, StackConfig]:
    return {
        "dev": stack_file("dev"),
        "prod": stack_file("prod"),
        "routing": model_aware(stack_file("prod")),
        "test": stack_config(),
    }


def _dashboards(config: StackConfig) -> list[dict[str, Any]]:
    return [json.loads(text) for text in build_dashboards(config).values()]


def _board(config: StackConfig, kind: str) -> dict[str, Any]:
    """The `overview` or `usage` dashboard of `config`."""
    (board,) = [b for b in _dashboards(config) if b["uid"] == f"{config.name_prefix}-{kind}"]
    return board


def _panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    (panel,) = [p for p in _panels(board) if p["title"] == title]
    return panel


def _row_titles(board: dict[str, Any]) -> list[str]:
    return [p["title"] for p in board["panels"] if p["type"] == "row"]


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


@pytest.mark.parametrize("stack", [*STACKS, "test"])
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
            assert panel["type"] in PANEL_TYPES, where
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


@pytest.mark.process
@pytest.mark.parametrize("stack", STACKS)
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


@pytest.mark.process
def test_promtool_parse_check_can_fail(tmp_path: Path) -> None:
    path = tmp_path / "queries.yml"
    rules = [{"record": "dashboard:bad", "expr": "sum(rate(llm_requests_total[1m])"}]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    assert promtool("check", "rules", path).returncode != 0


@pytest.mark.parametrize("stack", STACKS)
def test_queries_read_only_metrics_that_exist(stack: str, gateway_metric_names: set[str]) -> None:
    known = gateway_metric_names | NGINX_METRICS | DCGM_METRICS | SCRAPE_METRICS
    for where, expr in _exprs(_stacks()[stack]):
        names = metric_names(_promql(expr))
        assert names, f"{where} reads no metric"
        assert names <= known, f"{where} reads unknown metrics {names - known}"
        gateway = {n for n in names if n.startswith("llm_")}
        assert gateway <= gateway_metric_names, where
        if names <= gateway_metric_names | {"up"}:
            unknown = unknown_labels(names, label_names(_promql(expr)))
            assert not unknown, f"{where} uses labels no series has: {unknown}"


def test_label_check_can_fail() -> None:
    # `instance` is the gateway replica: per-instance series say `ollama_instance`.
    assert unknown_labels({"llm_requests_total"}, {"model", "modle"}) == {"modle"}
    assert unknown_labels({"llm_instance_up"}, {"ollama_instance", "instance"}) == set()
    assert unknown_labels({"up"}, {"model"}) == {"model"}


def test_per_instance_panels_group_by_the_ollama_instance() -> None:
    # Grouping llm_instance_up by `instance` would be valid and silently wrong: it is
    # the gateway replica, not the Ollama instance.
    checked = 0
    for where, expr in _exprs(_stacks()["routing"]):
        if metric_names(_promql(expr)) & PER_INSTANCE:
            assert "ollama_instance" in label_names(_promql(expr)), where
            checked += 1
    assert checked >= 5


def test_every_gateway_metric_is_charted() -> None:
    config = model_aware(stack_file("prod"))
    charted = set().union(*(metric_names(_promql(e)) for _, e in _exprs(config)))
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
    config = model_aware(stack_file("prod"))
    titles = [p["title"] for b in _dashboards(config) for p in _panels(b)]
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
        # Routing (model-aware stacks)
        "Queue depth by model and priority",
        "Queue wait p50 / p95 by model and priority",
        "Requests shed per minute by reason and priority",
        "Shed ratio (of requests that needed a model)",
        "In-flight requests by instance and model",
        "Models loaded by instance",
        "Model loads per hour by instance",
        "Model loads in the selected range",
        "Ollama instances up (router's view)",
        "Retries on another instance per minute by reason",
        # Usage
        "Tokens per minute by key and model",
        "Top 10 keys by tokens in the selected range",
        "Prompt vs completion tokens per minute",
        "Token-quota refusals per minute by key",
    ):
        assert wanted in titles


def test_nginx_panel_says_stub_status_has_no_per_upstream_numbers() -> None:
    panel = _panel(_board(stack_file("dev"), "overview"), "Nginx active connections")
    assert "no per-upstream" in panel["description"]


def test_thresholds_follow_the_alert_config() -> None:
    board = _board(stack_config(p95LatencySeconds=12), "overview")
    (panel,) = [p for p in _panels(board) if p["title"].startswith("Latency p50")]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": 12}


def test_routing_thresholds_follow_the_alert_config() -> None:
    config = stack_config(routing="model-aware", shedRatio=0.2, modelLoadsPerHour=7)
    board = _board(config, "overview")
    for title, threshold in (
        ("Shed ratio (of requests that needed a model)", 0.2),
        ("Model loads per hour by instance", 7),
    ):
        steps = _panel(board, title)["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1] == {"color": "red", "value": threshold}, title


def test_routing_row_only_with_model_aware_routing() -> None:
    # The gateway exports queue, shed and instance metrics only when it routes.
    routing_row = "Routing: queue, instances, model loads"
    balanced = least_conn(stack_file("prod"))
    assert routing_row not in _row_titles(_board(balanced, "overview"))
    assert routing_row in _row_titles(_board(model_aware(stack_file("prod")), "overview"))
    names = {n for _, e in _exprs(balanced) for n in metric_names(_promql(e))}
    assert not names & (PER_INSTANCE | {"llm_shed_total", "llm_queue_depth"})


def test_descriptions_follow_the_routing() -> None:
    reachable = "Ollama reachable"
    balanced = _panel(_board(least_conn(stack_file("prod")), "overview"), reachable)
    assert "through the balancer" in balanced["description"]
    routed = _panel(_board(model_aware(stack_file("prod")), "overview"), reachable)
    assert "model-aware router" in routed["description"]


@pytest.mark.parametrize("stack", ["dev", "routing"])
def test_usage_dashboard_on_every_stack(stack: str) -> None:
    config = _stacks()[stack]
    board = _board(config, "usage")
    assert board["title"] == f"LLM usage per key ({config.name_prefix})"
    assert board["time"]["from"] == "now-7d"
    names = {
        n for p in _panels(board) for t in p["targets"] for n in metric_names(_promql(t["expr"]))
    }
    assert names == {"llm_key_tokens_total", "llm_rate_limited_total"}


def test_usage_ranks_keys_over_the_selected_range() -> None:
    board = _board(stack_file("dev"), "usage")
    top = _panel(board, "Top 10 keys by tokens in the selected range")
    assert top["type"] == "bargauge"
    (target,) = top["targets"]
    # One value per key for the whole range, in rank order (Grafana keeps the order).
    assert target["instant"] is True
    assert target["expr"].startswith("sort_desc(topk(10, sum by (key) (increase(")
    assert "[$__range]" in target["expr"]
    stacked = _panel(board, "Tokens per minute by key and model")
    assert stacked["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    quota = _panel(board, "Token-quota refusals per minute by key")
    assert 'limit=~"tpm|tpd"' in quota["targets"][0]["expr"]


def test_value_panels_are_not_red_without_a_threshold() -> None:
    # Grafana's default thresholds turn anything from 80 red: a token count is no alarm.
    board = _board(stack_file("dev"), "usage")
    valued = [panel for panel in _panels(board) if panel["type"] in {"stat", "bargauge"}]
    assert valued, "the usage dashboard has no stat or bar gauge panel to check"
    for panel in valued:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert all(step["color"] != "red" for step in steps), panel["title"]


def test_rendering_is_deterministic() -> None:
    # Uploaded files replace containers when their text changes: no churn on re-render.
    config = stack_file("prod")
    assert build_dashboards(config) == build_dashboards(config)
    assert grafana_files(config, PROMETHEUS_URL) == grafana_files(config, PROMETHEUS_URL)
