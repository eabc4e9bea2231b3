"""The gateway's Prometheus metrics: names are a contract with monitoring/ (rules, dashboards).

Label cardinality is bounded: `model` is a model the upstream lists in /api/tags or
`other`; `key` is a key *name* from the config (never a key, never a digest) or `-`;
`endpoint` is one of the contract's route names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Cache hits answer in about a millisecond; long generations stream for minutes.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
FIRST_TOKEN_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
)  # fmt: skip
OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
CACHED_TOKEN_BUCKETS = (0, 128, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)

OTHER_MODEL = "other"
NO_KEY = "-"
# Endpoints whose answers are cached, as metric labels.
CACHED_ENDPOINTS = (
    "generate", "chat", "embed", "embeddings", "openai_chat", "openai_completions",
    "openai_embeddings",
)  # fmt: skip


class GatewayMetrics:
    """All gateway metrics on one registry (a fresh one per app, so tests never collide)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.requests = Counter(
            "llm_requests", "Requests answered, by model, endpoint and HTTP status.",
            ["model", "endpoint", "status"], registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            "llm_request_duration_seconds",
            "Time from request to last byte sent, by cache result (HIT, MISS, ...).",
            ["model", "endpoint", "cache"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.cache_hits = Counter(
            "llm_cache_hits", "Requests answered from the cache.", ["model", "endpoint"], registry=r
        )
        self.cache_misses = Counter(
            "llm_cache_misses", "Cacheable requests not found in the cache.",
            ["model", "endpoint"], registry=r,
        )  # fmt: skip
        self.tokens_generated = Counter(
            "llm_tokens_generated", "Tokens generated upstream (eval_count of final chunks).",
            ["model"], registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "llm_prompt_tokens", "Prompt tokens evaluated upstream (prompt_eval_count).",
            ["model"], registry=r,
        )  # fmt: skip
        self.time_to_first_token = Histogram(
            "llm_time_to_first_token_seconds",
            "Time from request to the first body byte sent to the client.",
            ["model", "endpoint"], buckets=FIRST_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens_per_second = Histogram(
            "llm_generation_tokens_per_second",
            "Generation speed reported by Ollama (eval_count / eval_duration).",
            ["model"], buckets=TOKENS_PER_SECOND_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_duration = Histogram(
            "llm_upstream_duration_seconds", "Time spent waiting on Ollama, request to last byte.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.overhead = Histogram(
            "llm_gateway_overhead_seconds",
            "Time the gateway added: total duration minus upstream time.",
            ["endpoint"], buckets=OVERHEAD_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "llm_in_flight_requests", "Requests being answered right now.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.upstream_errors = Counter(
            "llm_upstream_errors",
            "Failed upstream calls by reason (connect, timeout, status, stream, cancelled).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.upstream_up = Gauge(
            "llm_upstream_up", "1 when the last probe of the upstream (/api/tags) succeeded.",
            registry=r, multiprocess_mode="max",
        )  # fmt: skip
        self.redis_errors = Counter(
            "llm_redis_errors", "Failed or timed-out Redis calls, by operation.",
            ["operation"], registry=r,
        )  # fmt: skip
        self.coalesced = Counter(
            "llm_coalesced_requests", "Requests that shared another request's upstream call.",
            ["model", "endpoint"], registry=r,
        )  # fmt: skip
        self.stale_served = Counter(
            "llm_stale_served", "Expired cache entries served because the upstream failed.",
            ["model", "endpoint"], registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            "llm_rate_limited",
            "Requests refused with 429, by key name and limit (rpm, concurrency, tpm, tpd).",
            ["key", "limit"], registry=r,
        )  # fmt: skip
        self.auth_failures = Counter(
            "llm_auth_failures", "Requests refused with 401/403, by reason and key name.",
            ["reason", "key"], registry=r,
        )  # fmt: skip
        # Model-aware routing: the queue, the instances, loads and shedding. These are
        # what an autoscaler reads (KEDA scales the gateways on llm_queue_depth).
        self.queue_depth = Gauge(
            "llm_queue_depth", "Requests waiting in the gateway for a slot, by model and priority.",
            ["model", "priority"], registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.queue_wait = Histogram(
            "llm_queue_wait_seconds", "Time requests waited in the gateway before dispatch.",
            ["model", "priority"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.shed = Counter(
            "llm_shed", "Requests refused with 503 before reaching Ollama, by reason and priority.",
            ["reason", "priority"], registry=r,
        )  # fmt: skip
        self.instance_up = Gauge(
            "llm_instance_up", "1 when the Ollama instance answers (its /api/ps and requests).",
            ["ollama_instance"], registry=r, multiprocess_mode="max",
        )  # fmt: skip
        self.instance_drain_state = Gauge(
            "llm_instance_drain_state",
            "0 serving; 1 draining (drained by an admin, requests still in flight); 2 drained.",
            ["ollama_instance"], registry=r, multiprocess_mode="max",
        )  # fmt: skip
        self.instance_in_flight = Gauge(
            "llm_instance_in_flight", "Requests this gateway has in flight on an instance.",
            ["ollama_instance", "model"], registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.instance_model_loaded = Gauge(
            "llm_instance_model_loaded", "1 for each model resident on an instance (/api/ps).",
            ["ollama_instance", "model"], registry=r, multiprocess_mode="max",
        )  # fmt: skip
        self.model_loads = Counter(
            "llm_model_loads", "Model loads on an instance, started by this gateway or seen.",
            ["ollama_instance", "model"], registry=r,
        )  # fmt: skip
        # Prefix affinity (model-aware routing): estimates from what was sent where.
        self.affinity_hits = Counter(
            "llm_affinity_hits",
            "Requests sent to an instance estimated to hold a prefix of their prompt.",
            ["ollama_instance", "model"], registry=r,
        )  # fmt: skip
        self.affinity_waits = Counter(
            "llm_affinity_waits",
            "Requests that waited for the busy instance holding their prompt's prefix (it "
            "was their sooner start): held, then placed on that instance (holder) or, "
            "once it was no longer sooner, elsewhere.",
            ["model", "outcome"], registry=r,
        )  # fmt: skip
        self.affinity_cached_tokens = Histogram(
            "llm_affinity_cached_tokens",
            "Prompt tokens per request estimated to be cached where it was sent.",
            ["model"], buckets=CACHED_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.prompt_tokens_estimated = Counter(
            "llm_prompt_tokens_estimated",
            "Prompt tokens sent to each instance, estimated cached there or to evaluate.",
            ["ollama_instance", "part"], registry=r,
        )  # fmt: skip
        self.upstream_retries = Counter(
            "llm_upstream_retries", "Requests sent again on another instance, by reason.",
            ["reason"], registry=r,
        )  # fmt: skip
        # The semantic cache: every lookup by outcome (hit, miss, near_miss: the best
        # candidate just under the threshold, refused: over it but refused by a guard,
        # embed_failed, redis_unavailable, no_embed_model), its time, what refused.
        self.semantic_lookups = Counter(
            "llm_semantic_cache_lookups", "Semantic cache lookups, by model and outcome.",
            ["model", "outcome"], registry=r,
        )  # fmt: skip
        self.semantic_lookup_seconds = Histogram(
            "llm_semantic_cache_lookup_seconds",
            "Time of a semantic lookup: the index read, the embedding when needed, the scan.",
            ["model"], buckets=OVERHEAD_BUCKETS, registry=r,
        )  # fmt: skip
        self.semantic_embed_seconds = Histogram(
            "llm_semantic_cache_embed_seconds",
            "Time of the embedding calls a semantic lookup made (vectors not yet in Redis).",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.semantic_refusals = Counter(
            "llm_semantic_cache_refusals",
            "Candidates over the threshold that a guard refused, by guard.",
            ["guard"], registry=r,
        )  # fmt: skip
        self.semantic_embed_errors = Counter(
            "llm_semantic_cache_embed_errors",
            "Embedding calls that failed (each a semantic miss), by reason.",
            ["reason"], registry=r,
        )  # fmt: skip
        # Usage per key (names from the keys file, models from the catalogue or `other`).
        self.key_tokens = Counter(
            "llm_key_tokens", "Tokens used per key and model, by type (prompt, completion).",
            ["key", "model", "type"], registry=r,
        )  # fmt: skip
        # A gauge rather than an Info: Info does not work in multiprocess mode.
        self.build = Gauge(
            "llm_gateway_build_info", "Gateway version (always 1).", ["version"],
            registry=r, multiprocess_mode="max",
        )  # fmt: skip

    def start_series(self, models: list[str]) -> None:
        """Create the usual series at 0, so that rate() sees their first increment.

        A labelled counter is only exported once it has a value; without this, the
        first request of a model would be invisible to `rate()` and `increase()`.
        """
        for model in models:
            self.tokens_generated.labels(model)
            self.prompt_tokens.labels(model)
            for endpoint in CACHED_ENDPOINTS:
                self.requests.labels(model, endpoint, "200")
                self.cache_hits.labels(model, endpoint)
                self.cache_misses.labels(model, endpoint)
