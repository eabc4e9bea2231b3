"""A real `GatewayMetrics` registry with samples: the gateway's metric contract, read live."""

from __future__ import annotations

from llm_gateway.metrics import GatewayMetrics
from llm_monitoring.jobs import OLLAMA_INSTANCE
from prometheus_client import CollectorRegistry, generate_latest

MODEL = "llama3.2:1b"
OLLAMA = "ollama-1:11434"  # an Ollama instance label, as the router names them
# Labels every scraped series carries: the job and instance of the target and the
# stack's own (llm_monitoring.jobs.target_labels).
TARGET_LABELS = frozenset({"job", "instance", "service", "stack"})


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
    # Model-aware routing.
    m.queue_depth.labels(MODEL, "interactive").set(2)
    m.queue_wait.labels(MODEL, "batch").observe(1.5)
    m.shed.labels("queue_full", "batch").inc()
    m.instance_up.labels(OLLAMA).set(1)
    m.instance_drain_state.labels(OLLAMA).set(0)
    m.instance_in_flight.labels(OLLAMA, MODEL).set(1)
    m.instance_model_loaded.labels(OLLAMA, MODEL).set(1)
    m.model_loads.labels(OLLAMA, MODEL).inc()
    m.upstream_retries.labels("busy").inc()
    m.affinity_hits.labels(OLLAMA, MODEL).inc()
    m.affinity_cached_tokens.labels(MODEL).observe(1500)
    m.affinity_waits.labels(MODEL, "held").inc()
    m.prompt_tokens_estimated.labels(OLLAMA, "cached").inc(1500)
    m.prompt_tokens_estimated.labels(OLLAMA, "evaluated").inc(40)
    # The semantic cache.
    m.semantic_lookups.labels(MODEL, "hit").inc()
    m.semantic_lookup_seconds.labels(MODEL).observe(0.003)
    m.semantic_embed_seconds.observe(0.02)
    m.semantic_refusals.labels("numbers").inc()
    m.semantic_embed_errors.labels("timeout").inc()
    # Usage per key.
    m.key_tokens.labels("team-a", MODEL, "prompt").inc(30)
    m.key_tokens.labels("team-a", MODEL, "completion").inc(120)
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


def exported_labels() -> dict[str, set[str]]:
    """Sample name -> the label names its series carry once Prometheus has scraped them.

    The gateway's `instance` label (an Ollama instance) is stored as `ollama_instance`:
    the scrape config renames it (see llm_monitoring.prometheus; the e2e test with a
    model-aware gateway checks that a real Prometheus does so).
    """
    labels: dict[str, set[str]] = {}
    for family in populated_registry().collect():
        for sample in family.samples:
            names = {OLLAMA_INSTANCE if n == "instance" else n for n in sample.labels}
            labels.setdefault(sample.name, set()).update(names)
    return labels


def unknown_labels(expr_metrics: set[str], expr_labels: set[str]) -> set[str]:
    """Labels a query uses that none of the gateway series it reads carry.

    `expr_metrics` must be gateway sample names (or `up`, which has the target labels
    only); a label that no series has is a typo, and its panel or alert stays empty.
    """
    exported = exported_labels()
    unknown_metrics = expr_metrics - set(exported) - {"up"}
    if unknown_metrics:
        raise ValueError(f"not gateway metrics: {sorted(unknown_metrics)}")
    carried = set(TARGET_LABELS).union(*(exported.get(name, set()) for name in expr_metrics))
    return expr_labels - carried


def family_samples() -> dict[str, set[str]]:
    """Metric family -> the sample names it exports (without the `_created` timestamps)."""
    return {
        family.name: {s.name for s in family.samples if not s.name.endswith("_created")}
        for family in populated_registry().collect()
    }
