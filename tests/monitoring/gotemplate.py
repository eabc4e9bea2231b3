"""Expected alert annotations: the few Go template forms our rules use, done in Python.

promtool compares annotations exactly, so a test must know the text Prometheus will
produce, including the value it formats. Anything beyond these forms is an error here
(add it deliberately, with Prometheus's formatting rules).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_ACTION = re.compile(r"\{\{(.*?)\}\}")


def _humanize_percentage(value: float) -> str:
    return f"{value * 100:.4g}%"


def _humanize_duration(value: float) -> str:
    # Prometheus template/template.go humanizeDuration, for the >= 1 s range.
    if math.isnan(value) or math.isinf(value) or value < 1:
        raise ValueError(f"humanizeDuration({value}) is outside what the tests expect")
    whole = int(value)
    seconds, minutes = whole % 60, (whole // 60) % 60
    hours, days = (whole // 3600) % 24, whole // 86400
    if days:
        return f"{days}d {hours}h {minutes}m {seconds}s"
    if hours:
        return f"{hours}h {minutes}m {seconds}s"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{value:.4g}s"


def expand(template: str, labels: Mapping[str, str], value: float) -> str:
    """`template` as Prometheus renders an annotation for an alert with these labels/value."""

    def action(match: re.Match[str]) -> str:
        body = match.group(1).strip()
        if body.startswith("$labels."):
            return labels[body.removeprefix("$labels.")]
        if body == "$value | humanizePercentage":
            return _humanize_percentage(value)
        if body == "$value | humanizeDuration":
            return _humanize_duration(value)
        printf = re.fullmatch(r'\$value \| printf "(%[^"]+)"', body)
        if printf:
            return printf.group(1) % value
        raise ValueError(f"template action {{{{{body}}}}} is not supported by the tests")

    return _ACTION.sub(action, template)
