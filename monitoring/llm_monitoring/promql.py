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


def _or_zero(expr: str, other: str) -> str:
    """`expr`, or 0 where only `other` has series.

    prometheus-client exports a labelled counter only after its first increment, so
    one side of a ratio may not exist at all (after a restart with a broken cache, no
    `llm_cache_hits_total`; before the first shed, no `llm_shed_total`): a plain
    division would then be empty (no alert, blank panel) exactly when the ratio is 0.
    """
    return f"({expr} or 0 * {other})"


def both(first: str, second: str) -> str:
    """first + second, where either may not exist yet (see `_or_zero`)."""
    return f"({_or_zero(first, second)} + {_or_zero(second, first)})"


def share(part: str, rest: str) -> str:
    """part / (part + rest) of two disjoint counts, either of which may not exist yet."""
    return f"{_or_zero(part, rest)}\n/\n{both(part, rest)}"


def cacheable_requests(window: str, by: str, offset: str = "") -> str:
    """Hits + misses in the window."""
    hits = gateway_increase("llm_cache_hits_total", window, by, offset=offset)
    misses = gateway_increase("llm_cache_misses_total", window, by, offset=offset)
    return both(hits, misses)


def cache_hit_ratio(window: str, by: str, offset: str = "") -> str:
    """Hits / (hits + misses)."""
    hits = gateway_rate("llm_cache_hits_total", window, by, offset=offset)
    misses = gateway_rate("llm_cache_misses_total", window, by, offset=offset)
    return share(hits, misses)


# Sheds that say the stack lacks capacity: a gateway shutting down refuses its queue
# (`shutdown`), which is a deploy, not overload.
CAPACITY_SHED = 'reason!="shutdown"'
# Every request the dispatcher hands to an instance observes its queue wait once.
DISPATCHED = "llm_queue_wait_seconds_count"


def shed_window(config: StackConfig) -> str:
    """Range of the shedding alert: 10 minutes (bursts are shed by design), >= 4 scrapes."""
    return duration(max(600, 4 * config.monitoring.scrape_interval_seconds))


def shed_ratio(window: str, by: str) -> str:
    """Share of the requests that needed a model (queued) that were shed, not dispatched.

    Cache hits and coalesced followers never queue: a high hit ratio does not dilute it.
    """
    shed = gateway_rate("llm_shed_total", window, by, CAPACITY_SHED)
    dispatched = gateway_rate(DISPATCHED, window, by)
    return share(shed, dispatched)


def queued_requests(window: str, by: str) -> str:
    """Requests that asked the dispatcher for a slot in the window: shed + dispatched."""
    shed = gateway_increase("llm_shed_total", window, by, CAPACITY_SHED)
    dispatched = gateway_increase(DISPATCHED, window, by)
    return both(shed, dispatched)


def model_loads(window: str, by: str, per_second: bool = False) -> str:
    """Model loads per Ollama instance (and whatever else `by` keeps), over all replicas.

    Each gateway replica counts the loads it starts and the ones it sees appear in
    /api/ps, so every replica counts (nearly) every load: the busiest replica's count is
    the instance's, a sum over replicas would count each load once per replica.
    `by` must keep `ollama_instance`; `per_second` gives rate() instead of increase().
    """
    function = "rate" if per_second else "increase"
    per_replica = sum_by(
        f"instance, {by}",
        f"{function}(llm_model_loads_total{selector(GATEWAY_JOB)}[{window}])",
    )
    return f"max by ({by}) ({per_replica})"


def histogram_quantile(quantile: float, metric: str, window: str, by: str, *matchers: str) -> str:
    """Quantile of a gateway histogram (`metric` without `_bucket`), by `by`."""
    keep = f"le, {by}" if by else "le"
    buckets = gateway_rate(f"{metric}_bucket", window, keep, *matchers)
    return f"histogram_quantile({quantile}, {buckets})"
