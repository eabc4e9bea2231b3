"""The metric-name finder the dashboard and rule checks rely on."""

from __future__ import annotations

import pytest

from tests.monitoring.promql_names import label_names, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="llm-gateway"} == 0', {"up"}),
        (
            'sum by (model, endpoint) (rate(llm_requests_total{status=~"5.."}[5m])) * 60',
            {"llm_requests_total"},
        ),
        (
            "histogram_quantile(0.95, sum by (le) (rate(a_bucket[$__rate_interval])))",
            {"a_bucket"},
        ),
        ("sum(rate(a_total[5m] offset 1d)) / sum(b) by (le)", {"a_total", "b"}),
        ('absent(x{job="a"}) and on () sum(y) > 0', {"x", "y"}),
        ("(a or 0 * b) / ((a or 0 * b) + (b or 0 * a))", {"a", "b"}),
        ('max by (gpu) (DCGM_FI_DEV_FB_USED{job="gpu"}) + 1e3', {"DCGM_FI_DEV_FB_USED"}),
        ('a{by="on", le="+Inf"} unless ignoring (instance) b', {"a", "b"}),
        ("a * on (job) group_left (model) b", {"a", "b"}),
    ],
)
def test_finds_exactly_the_selected_metrics(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        metric_names('up{job="a"')


@pytest.mark.parametrize(
    ("expr", "labels"),
    [
        ("up", set()),
        ('up{job="llm-gateway"} == 0', {"job"}),
        (
            'sum by (model, endpoint) (rate(llm_requests_total{status=~"5..",a!="x"}[5m]))',
            {"model", "endpoint", "status", "a"},
        ),
        ('a{by="on", le!~"+Inf"} unless ignoring (instance) b', {"by", "le", "instance"}),
        ("a * on (job) group_left (model) b", {"job", "model"}),
        ("a * on (job) group_left b", {"job"}),
        ("max by (x) (sum by (instance, x) (increase(m[1h]))) > 20", {"x", "instance"}),
        ("sum without (pid) (m)", {"pid"}),
    ],
)
def test_finds_exactly_the_label_names(expr: str, labels: set[str]) -> None:
    assert label_names(expr) == labels


def test_label_finder_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        label_names('up{job="a"')
    with pytest.raises(ValueError, match="matcher"):
        label_names('up{job>"a"}')
