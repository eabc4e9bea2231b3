"""PromQL built in one place, so an alert and the panel that explains it compute the same thing.

Each builder takes the range window (`5m` in rules, `$__rate_interval` in dashboards)
and the labels to keep (`by`); an empty `by` sums everything into one series.
"""

from __future__ import annotations

from llm_config.model import StackConfig

from llm_monitoring.jobs import GATEWAY_JOB, selector

# Answers that come out of Redis rather than from a model: HIT, and STALE (an expired
# entry served because the upstream failed). Everything else waited on Ollama.
FROM_CACHE = 'cache=~"HIT|STALE"'
NOT_FROM_CACHE = 'cache!~"HIT|STALE"'
SERVER_ERROR = 'status=~"5.."'


def duration(seconds: int) -> str:
    """A PromQL duration: 300 -> `5m`, 90 -> `90s`, 7200 -> `2h`."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def alert_window(config: StackConfig) -> str:
    """Range of the ratio alerts: 5 minutes, but never under 4 scrapes (rate needs points)."""
    return duration(max(300, 4 * config.monitoring.scrape_interval_seconds))


def short_window(config: StackConfig) -> str:
    """Range for `is it still happening` checks: 2 minutes, never under 4 scrapes."""
    return duration(max(120, 4 * config.monitoring.scrape_interval_seconds))


def sum_by(by: str, expr: str) -> str:
    return f"sum by ({by}) ({expr})" if by else f"sum({expr})"


def gateway_rate(metric: str, window: str, by: str, *matchers: str, offset: str = "") -> str:
    """Per-second rate of a gateway counter, summed by `by`."""
    shift = f" offset {offset}" if offset else ""
    return sum_by(by, f"rate({metric}{selector(GATEWAY_JOB, *matchers)}[{window}]{shift})")


def gateway_increase(metric: str, window: str, by: str, *matchers: str, offset: str = "") -> str:
    shift = f" offset {offset}" if offset else ""
    return sum_by(by, f"increase({metric}{selector(GATEWAY_JOB, *matchers)}[{window}]{shift})")


def error_ratio(window: str, by: str) -> str:
    """Share of answers that were 5xx (429s and other 4xx are the client's, not ours)."""
    errors = gateway_rate("llm_requests_total", window, by, SERVER_ERROR)
    total = gateway_rate("llm_requests_total", window, by)
    return f"{errors}\n/\n{total}"


def cacheable_requests(window: str, by: str, offset: str = "") -> str:
    """Hits + misses in the window; either counter may not exist yet (see cache_hit_ratio)."""
    hits = gateway_increase("llm_cache_hits_total", window, by, offset=offset)
    misses = gateway_increase("llm_cache_misses_total", window, by, offset=offset)
    return f"(({hits} or 0 * {misses}) + ({misses} or 0 * {hits}))"


def cache_hit_ratio(window: str, by: str, offset: str = "") -> str:
    """Hits / (hits + misses).

    prometheus-client exports a labelled counter only after its first increment, so
    after a restart with a broken cache `llm_cache_hits_total` does not exist at all:
    a plain division would then be empty (no alert, blank panel) exactly when the ratio
    is 0. `x or 0 * y` stands in a zero for the missing side.
    """
    hits = gateway_rate("llm_cache_hits_total", window, by, offset=offset)
    misses = gateway_rate("llm_cache_misses_total", window, by, offset=offset)
    hits_or_zero = f"({hits} or 0 * {misses})"
    misses_or_zero = f"({misses} or 0 * {hits})"
    return f"{hits_or_zero}\n/\n({hits_or_zero} + {misses_or_zero})"


def histogram_quantile(quantile: float, metric: str, window: str, by: str, *matchers: str) -> str:
    """Quantile of a gateway histogram (`metric` without `_bucket`), by `by`."""
    keep = f"le, {by}" if by else "le"
    buckets = gateway_rate(f"{metric}_bucket", window, keep, *matchers)
    return f"histogram_quantile({quantile}, {buckets})"
