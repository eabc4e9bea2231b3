"""Alert rules: valid for promtool, and each alert fires when it should and only then."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_config.model import StackConfig
from llm_monitoring.rules import render_alert_rules

from tests.monitoring.alert_cases import CASES, Case, Check, promtool_tests
from tests.monitoring.promql_names import metric_names
from tests.monitoring.stacks import stack_config, stack_file
from tests.monitoring.tools import explain, promtool

RULES_FILE = "alerts.yml"


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


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_file_rules_pass_promtool_check(tmp_path: Path, stack: str) -> None:
    path = tmp_path / RULES_FILE
    path.write_text(render_alert_rules(stack_file(stack)))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, explain(result)
    assert "SUCCESS" in result.stdout


def test_promtool_check_rejects_a_broken_rule(tmp_path: Path) -> None:
    doc = yaml.safe_load(render_alert_rules(stack_config()))
    doc["groups"][0]["rules"][0]["expr"] = "sum by (job (up)"
    path = tmp_path / RULES_FILE
    path.write_text(yaml.safe_dump(doc))
    assert promtool("check", "rules", path).returncode != 0


def test_every_alert_is_actionable_at_2am() -> None:
    config = stack_config()
    for rule in _rules(config):
        assert rule["for"] == f"{config.monitoring.alerts.for_minutes}m", rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
        assert summary, rule["alert"]
        assert "\n" not in summary, rule["alert"]
        # Says where to look: a container, a dashboard or a metric to check.
        assert any(hint in description for hint in ("docker", "dashboard", "/metrics")), rule


def test_every_alert_has_promtool_cases() -> None:
    names = {rule["alert"] for rule in _rules(stack_config(replicas=2))}
    assert names == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_fires_when_it_should_and_only_then(tmp_path: Path, name: str) -> None:
    config = stack_config(replicas=2)
    cases = CASES[name](config)
    assert any(check.firing for case in cases for check in case.checks), "no firing case"
    assert any(not check.firing for case in cases for check in case.checks), "no quiet case"
    code, output = _run_cases(tmp_path, config, name, cases)
    assert code == 0, output


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


@pytest.mark.parametrize("threshold", [0.2, 0.3])
def test_error_ratio_threshold_comes_from_config(tmp_path: Path, threshold: float) -> None:
    # The 25% case fires at 0.2 and stays quiet at 0.3 (the cases compute which).
    config = stack_config(errorRatio=threshold)
    cases = CASES["LLMHighErrorRatio"](config)
    code, output = _run_cases(tmp_path, config, "LLMHighErrorRatio", cases)
    assert code == 0, output


@pytest.mark.parametrize("threshold", [45, 60])
def test_latency_threshold_comes_from_config(tmp_path: Path, threshold: float) -> None:
    config = stack_config(p95LatencySeconds=threshold)
    code, output = _run_cases(
        tmp_path, config, "LLMHighLatencyP95", CASES["LLMHighLatencyP95"](config)
    )
    assert code == 0, output


def test_cache_drop_threshold_comes_from_config(tmp_path: Path) -> None:
    # 80% -> 10% is no collapse when only a drop below 10% of yesterday counts.
    config = stack_config(cacheHitRatioDrop=0.1)
    collapse = CASES["LLMCacheHitRatioCollapse"](config)[0]
    assert not collapse.checks[-1].firing
    code, output = _run_cases(tmp_path, config, "LLMCacheHitRatioCollapse", [collapse])
    assert code == 0, output


def test_for_duration_comes_from_config(tmp_path: Path) -> None:
    # Down from minute 3: at 20m a 30-minute `for` is still pending.
    config = stack_config(forMinutes=30)
    cases = [c for c in CASES["LLMGatewayDown"](config) if c.name == "all replicas down"]
    quiet = [Case(c.name, c.series, [Check("20m", [])]) for c in cases]
    code, output = _run_cases(tmp_path, config, "LLMGatewayDown", quiet)
    assert code == 0, output


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
    for rule in _rules(stack_config()):
        unknown = metric_names(rule["expr"]) - gateway_metric_names - exporters
        assert not unknown, f"{rule['alert']} reads unknown metrics {unknown}"
