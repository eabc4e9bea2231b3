"""Panels and dashboards from small specs, with grafana-foundation-sdk (no hand-written JSON).

Every dashboard of the stack is a list of rows of `PanelSpec`s turned into the SDK's
builders here, so all of them share the datasource, legends, thresholds and layout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
)
from llm_config.model import StackConfig

from llm_monitoring import promql
from llm_monitoring.jobs import GATEWAY_JOB, selector

DATASOURCE_UID = "prometheus"
DATASOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
RATE = "$__rate_interval"  # Grafana picks >= 4 scrapes (the datasource knows the interval)
RANGE = "$__range"  # the dashboard's time range, for totals over what the user selected
GW = selector(GATEWAY_JOB)

Panel = timeseries.Panel | stat.Panel | bargauge.Panel | statetimeline.Panel


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    # One value at the end of the range (totals over RANGE) rather than a series.
    instant: bool = False


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: Sequence[Query]
    unit: str = units.Short
    # timeseries, stat, bargauge (ranked totals) or state-timeline (on/off states).
    kind: str = "timeseries"
    width: int = 8
    height: int = 8
    # A red line/colour from this value on (an alert threshold, shown where it applies).
    red_from: float | None = None
    # stat panels: red below this value instead (replicas up, upstream up).
    red_below: float | None = None
    value_names: dict[str, tuple[str, str]] = field(default_factory=dict)
    max_value: float | None = None
    # timeseries: series stacked on each other (parts of a whole, e.g. tokens per key).
    stacked: bool = False


@dataclass(frozen=True)
class Row:
    title: str
    panels: Sequence[PanelSpec]


def per_minute(expr: str) -> str:
    return f"{expr} * 60"


def quantiles(metric: str, *matchers: str, by: str = "", legend: str = "") -> list[Query]:
    """p50 / p95 / p99 of a gateway histogram; `legend` is appended to `pNN`."""
    return [
        Query(
            promql.histogram_quantile(q, metric, RATE, by, *matchers),
            f"p{round(q * 100)}{' ' + legend if legend else ''}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def _thresholds(spec: PanelSpec) -> dashboard_builders.ThresholdsConfig | None:
    if spec.red_from is not None:
        steps = [Threshold(None, "green"), Threshold(spec.red_from, "red")]
    elif spec.red_below is not None:
        steps = [Threshold(None, "red"), Threshold(spec.red_below, "green")]
    elif spec.kind in {"stat", "bargauge"}:
        # Grafana's default (red from 80) would colour a token count or a queue as an
        # alarm; without a threshold that means something, a value is just a value.
        steps = [Threshold(None, "blue")]
    else:
        return None
    return dashboard_builders.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)


def _legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def _last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"])


def _visual(spec: PanelSpec) -> Panel:
    if spec.kind == "stat":
        return stat.Panel().graph_mode(common.BigValueGraphMode.AREA).reduce_options(_last_value())
    if spec.kind == "bargauge":
        return (
            bargauge.Panel()
            .orientation(common.VizOrientation.HORIZONTAL)
            .display_mode(common.BarGaugeDisplayMode.GRADIENT)
            .reduce_options(_last_value())
        )
    if spec.kind == "state-timeline":
        return (
            statetimeline.Panel()
            .show_value(common.VisibilityMode.NEVER)
            .merge_values(True)
            .legend(_legend())
        )
    if spec.kind != "timeseries":
        raise ValueError(f"panel {spec.title!r}: unknown kind {spec.kind!r}")
    panel = timeseries.Panel().legend(_legend())
    if spec.stacked:
        panel = panel.stacking(
            common_builders.StackingConfig().mode(common.StackingMode.NORMAL)
        ).fill_opacity(30)
    return panel


def build_panel(spec: PanelSpec, panel_id: int) -> Panel:
    panel = (
        _visual(spec)
        .id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
    )
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        target = prometheus_builders.Dataquery().expr(query.expr).ref_id(ref).datasource(DATASOURCE)
        if query.legend:
            target = target.legend_format(query.legend)
        if query.instant:
            target = target.instant()
        panel = panel.with_target(target)
    thresholds = _thresholds(spec)
    if thresholds is not None:
        panel = panel.thresholds(thresholds)
        if isinstance(panel, timeseries.Panel):
            panel = panel.thresholds_style(
                common_builders.GraphThresholdsStyleConfig().mode(
                    common.GraphThresholdsStyleMode.DASHED
                )
            )
    if spec.max_value is not None:
        panel = panel.min(0).max(spec.max_value)
    if spec.value_names:
        options = {
            value: ValueMappingResult(text=text, color=color, index=i)
            for i, (value, (text, color)) in enumerate(spec.value_names.items())
        }
        panel = panel.mappings([ValueMap(options)])
    return panel


def build_dashboard(
    config: StackConfig,
    uid: str,
    title: str,
    description: str,
    rows: Sequence[Row],
    time_from: str = "now-6h",
) -> dashboard_builders.Dashboard:
    """A read-only dashboard of `rows`, panel ids in order (rows count as panels)."""
    refresh = f"{max(30, config.monitoring.scrape_interval_seconds)}s"
    board = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(
            f"{description} Generated from the stack config by llm_monitoring: edit the "
            "code, not this."
        )
        .tags(["llm-stack", config.environment])
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time(time_from, "now")
        .refresh(refresh)
        .readonly()
    )
    panel_id = 0
    for row in rows:
        panel_id += 1
        board = board.with_row(dashboard_builders.Row(row.title).id(panel_id))
        for spec in row.panels:
            panel_id += 1
            board = board.with_panel(build_panel(spec, panel_id))
    return board


def dashboard_json(board: dashboard_builders.Dashboard) -> str:
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
