"""Alert rules: valid for promtool, and each alert fires when it should and only then."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_config.load import ConfigError
from llm_config.model import StackConfig
from llm_monitoring.rules import render_alert_rules

from tests.monitoring.alert_cases import CASES, Case, Check, promtool_tests
from tests.monitoring.gateway_registry import unknown_labels
from tests.monitoring.promql_names import label_names, metric_names
from tests.monitoring.stacks import stack_config, stack_file
from tests.monitoring.tools import explain, promtool

RULES_FILE = "alerts.yml"
# A stack that renders every alert: replicas and instances to lose, model-aware routing.
EVERY_ALERT: dict[str, Any] = {"replicas": 2, "instances": 2, "routing": "model-aware"}
ROUTING_ALERTS = {"LLMRequestsShed", "LLMOllamaInstanceDown", "LLMModelThrash"}


def _rules(config: StackConfig) -> list[dict[str, Any]]:
    doc = yaml.safe_load(render_alert_rules(config))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _rule(config: StackConfig, name: str) -> dict[str, Any]:
    matches = [r for r in _rules(config) if r["alert"] == name]
    assert len(matches) == 1, f"{name}: {len(matches)} rules"
    return matches[0]


def _run_cases(
    tmp_path: Path, config: StackConfig, name: str, cases: list[Case]
) -> tuple[int, str]:
    """Render the rules of `config`, run promtool's unit tests of `name` against them."""
    (tmp_path / RULES_FILE).write_text(render_alert_rules(config))
    doc = promtool_tests(_rule(config, name), cases, RULES_FILE)
    test_file = tmp_path / f"test-{name}.yml"
    test_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = promtool("test", "rules", test_file)
    return result.returncode, explain(result)


@pytest.mark.process
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_file_rules_pass_promtool_check(tmp_path: Path, stack: str) -> None:
    path = tmp_path / RULES_FILE
    path.write_text(render_alert_rules(stack_file(stack)))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, explain(result)
    assert "SUCCESS" in result.stdout


@pytest.mark.process
def test_promtool_check_rejects_a_broken_rule(tmp_path: Path) -> None:
    doc = yaml.safe_load(render_alert_rules(stack_config()))
    doc["groups"][0]["rules"][0]["expr"] = "sum by (job (up)"
    path = tmp_path / RULES_FILE
    path.write_text(yaml.safe_dump(doc))
    assert promtool("check", "rules", path).returncode != 0


def test_every_alert_is_actionable_at_2am() -> None:
    config = stack_config(**EVERY_ALERT)
    for rule in _rules(config):
        assert rule["for"] == f"{config.monitoring.alerts.for_minutes}m", rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
        assert summary, rule["alert"]
        assert "\n" not in summary, rule["alert"]
        # Says where to look: a container, a dashboard or a metric to check.
        assert any(hint in description for hint in ("docker", "dashboard", "/metrics")), rule


def test_every_alert_has_promtool_cases() -> None:
    names = {rule["alert"] for rule in _rules(stack_config(**EVERY_ALERT))}
    assert names == set(CASES)


@pytest.mark.process
@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_fires_when_it_should_and_only_then(tmp_path: Path, name: str) -> None:
    config = stack_config(**EVERY_ALERT)
    cases = CASES[name](config)
    assert any(check.firing for case in cases for check in case.checks), "no firing case"
    assert any(not check.firing for case in cases for check in case.checks), "no quiet case"
    code, output = _run_cases(tmp_path, config, name, cases)
    assert code == 0, output


@pytest.mark.process
def test_promtool_cases_can_fail(tmp_path: Path) -> None:
    """A wrong expectation makes promtool fail: the cases above are not vacuous."""
    config = stack_config()
    wrong = [
        Case(case.name, case.series, [Check(c.eval_time, []) for c in case.checks])
        for case in CASES["LLMHighErrorRatio"](config)
    ]
    code, output = _run_cases(tmp_path, config, "LLMHighErrorRatio", wrong)
    assert code != 0
    assert "LLMHighErrorRatio" in output


@pytest.mark.process
@pytest.mark.parametrize("threshold", [0.2, 0.3])
def test_error_ratio_threshold_comes_from_config(tmp_path: Path, threshold: float) -> None:
    # The 25% case fires at 0.2 and stays quiet at 0.3 (the cases compute which).
    config = stack_config(errorRatio=threshold)
    cases = CASES["LLMHighErrorRatio"](config)
    code, output = _run_cases(tmp_path, config, "LLMHighErrorRatio", cases)
    assert code == 0, output


@pytest.mark.process
@pytest.mark.parametrize("threshold", [45, 60])
def test_latency_threshold_comes_from_config(tmp_path: Path, threshold: float) -> None:
    config = stack_config(p95LatencySeconds=threshold)
    code, output = _run_cases(
        tmp_path, config, "LLMHighLatencyP95", CASES["LLMHighLatencyP95"](config)
    )
    assert code == 0, output


@pytest.mark.process
def test_cache_drop_threshold_comes_from_config(tmp_path: Path) -> None:
    # 80% -> 10% is no collapse when only a drop below 10% of yesterday counts.
    config = stack_config(cacheHitRatioDrop=0.1)
    collapse = CASES["LLMCacheHitRatioCollapse"](config)[0]
    assert not collapse.checks[-1].firing
    code, output = _run_cases(tmp_path, config, "LLMCacheHitRatioCollapse", [collapse])
    assert code == 0, output


@pytest.mark.process
def test_for_duration_comes_from_config(tmp_path: Path) -> None:
    # Down from minute 3: at 20m a 30-minute `for` is still pending.
    config = stack_config(forMinutes=30)
    cases = [c for c in CASES["LLMGatewayDown"](config) if c.name == "all replicas down"]
    quiet = [Case(c.name, c.series, [Check("20m", [])]) for c in cases]
    code, output = _run_cases(tmp_path, config, "LLMGatewayDown", quiet)
    assert code == 0, output


@pytest.mark.process
def test_redis_severity_follows_fail_closed_limits(tmp_path: Path) -> None:
    config = stack_config(limits_fail_closed=True)
    assert _rule(config, "LLMRedisUnreachable")["labels"]["severity"] == "critical"
    code, output = _run_cases(
        tmp_path, config, "LLMRedisUnreachable", CASES["LLMRedisUnreachable"](config)
    )
    assert code == 0, output


def test_single_replica_stack_has_no_replica_alert() -> None:
    names = {rule["alert"] for rule in _rules(stack_config(replicas=1))}
    assert "LLMGatewayReplicaDown" not in names
    assert "LLMGatewayDown" in names


def test_no_cache_alert_when_the_cache_is_off() -> None:
    names = {rule["alert"] for rule in _rules(stack_config(cache_mode="off"))}
    assert "LLMCacheHitRatioCollapse" not in names


def test_window_grows_with_a_slow_scrape_interval() -> None:
    # rate() needs several samples: at a 2-minute scrape a 5m window is too short.
    expr = _rule(stack_config(scrape_interval_seconds=120), "LLMHighErrorRatio")["expr"]
    assert "[8m]" in expr
    assert "[5m]" not in expr


def test_rules_only_read_metrics_that_exist(gateway_metric_names: set[str]) -> None:
    exporters = {"up", "nginx_up"}
    for rule in _rules(stack_config(**EVERY_ALERT)):
        names = metric_names(rule["expr"])
        unknown = names - gateway_metric_names - exporters
        assert not unknown, f"{rule['alert']} reads unknown metrics {unknown}"
        if "nginx_up" not in names:
            labels = unknown_labels(names, label_names(rule["expr"]))
            assert not labels, f"{rule['alert']} uses labels no series has: {labels}"


def test_routing_alerts_only_with_model_aware_routing() -> None:
    # The gateway exports queue, shed and instance metrics only when it routes.
    least_conn = {rule["alert"] for rule in _rules(stack_config(replicas=2, instances=2))}
    assert not least_conn & ROUTING_ALERTS
    one_instance = {r["alert"] for r in _rules(stack_config(routing="model-aware", instances=1))}
    # With one instance, LLMUpstreamDown says it already.
    assert one_instance & ROUTING_ALERTS == {"LLMRequestsShed", "LLMModelThrash"}


@pytest.mark.process
@pytest.mark.parametrize("threshold", [0.05, 0.15])
def test_shed_threshold_comes_from_config(tmp_path: Path, threshold: float) -> None:
    # The 10% case fires at 0.05 and stays quiet at 0.15 (the cases compute which).
    config = stack_config(**EVERY_ALERT, shedRatio=threshold)
    cases = CASES["LLMRequestsShed"](config)
    assert bool(cases[0].checks[-1].firing) == (threshold < 0.1)
    code, output = _run_cases(tmp_path, config, "LLMRequestsShed", cases)
    assert code == 0, output


@pytest.mark.process
@pytest.mark.parametrize("threshold", [20, 40])
def test_thrash_threshold_comes_from_config(tmp_path: Path, threshold: int) -> None:
    config = stack_config(**EVERY_ALERT, modelLoadsPerHour=threshold)
    cases = CASES["LLMModelThrash"](config)
    assert bool(cases[0].checks[-1].firing) == (threshold < 30)
    code, output = _run_cases(tmp_path, config, "LLMModelThrash", cases)
    assert code == 0, output


@pytest.mark.process
def test_model_loads_count_each_load_once_over_replicas(tmp_path: Path) -> None:
    # Both replicas count the same 30 loads: summing them would say 60 and fire at 40.
    config = stack_config(**EVERY_ALERT, modelLoadsPerHour=40)
    (thrash, *_) = CASES["LLMModelThrash"](config)
    assert not thrash.checks[-1].firing
    code, output = _run_cases(tmp_path, config, "LLMModelThrash", [thrash])
    assert code == 0, output


@pytest.mark.parametrize(
    ("key", "value"), [("shedRatio", 0), ("shedRatio", 1), ("modelLoadsPerHour", 0)]
)
def test_routing_thresholds_are_validated(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key):
        stack_config(**{key: value})
