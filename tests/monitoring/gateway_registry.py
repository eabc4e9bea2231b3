"""A real `GatewayMetrics` registry with samples: the gateway's metric contract, read live."""

from __future__ import annotations

from llm_gateway.metrics import GatewayMetrics
from prometheus_client import CollectorRegistry, generate_latest

MODEL = "llama3.2:1b"


def populated_registry() -> CollectorRegistry:
    """A registry where every metric (and label set) has at least one sample."""
    registry = CollectorRegistry()
    m = GatewayMetrics(registry)
    m.requests.labels(MODEL, "chat", "200").inc(3)
    m.requests.labels(MODEL, "chat", "503").inc()
    for cache, seconds in (("HIT", 0.002), ("MISS", 4.2), ("COALESCED", 4.0)):
        m.request_duration.labels(MODEL, "chat", cache).observe(seconds)
    m.cache_hits.labels(MODEL, "chat").inc()
    m.cache_misses.labels(MODEL, "chat").inc()
    m.tokens_generated.labels(MODEL).inc(120)
    m.prompt_tokens.labels(MODEL).inc(30)
    m.time_to_first_token.labels(MODEL, "chat").observe(0.4)
    m.tokens_per_second.labels(MODEL).observe(42)
    m.upstream_duration.labels("chat").observe(4.1)
    m.overhead.labels("chat").observe(0.0004)
    m.in_flight.set(2)
    m.upstream_errors.labels("timeout").inc()
    m.upstream_up.set(1)
    m.redis_errors.labels("get").inc()
    m.coalesced.labels(MODEL, "chat").inc()
    m.stale_served.labels(MODEL, "chat").inc()
    m.rate_limited.labels("team-a", "rpm").inc()
    m.auth_failures.labels("unknown_key", "-").inc()
    _set_build(m)
    return registry


def _set_build(m: GatewayMetrics) -> None:
    # `build` was an Info and became a labelled gauge (multiprocess mode); accept both.
    build = m.build
    if hasattr(build, "info"):
        build.info({"version": "test"})
    else:
        build.labels("test").set(1)


def exposition() -> str:
    return generate_latest(populated_registry()).decode()


def exported_names() -> set[str]:
    """Sample names (with _total/_bucket/_count/_sum/_info) of every gateway metric."""
    names = set()
    for family in populated_registry().collect():
        for sample in family.samples:
            names.add(sample.name)
    return names


def family_samples() -> dict[str, set[str]]:
    """Metric family -> the sample names it exports (without the `_created` timestamps)."""
    return {
        family.name: {s.name for s in family.samples if not s.name.endswith("_created")}
        for family in populated_registry().collect()
    }
