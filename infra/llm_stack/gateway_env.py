"""The gateway's environment, decided in one place for every way the stack runs.

The Pulumi program sets it on the gateway containers; the local stack sets it on
gateway processes. Variable names are the gateway's contract (`llm_gateway.settings`,
prefix `GATEWAY_`).
"""

from __future__ import annotations

from collections.abc import Sequence

from llm_config.model import StackConfig

# Values that carry credentials: the Pulumi program passes these as secret Outputs
# (GATEWAY_REDIS_URL holds the Redis password; GATEWAY_API_KEYS the key digests).
SECRET_VARIABLES = frozenset(
    {
        "GATEWAY_REDIS_URL",
        "GATEWAY_CACHE_REDIS_URL",
        "GATEWAY_API_KEYS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    }
)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def gateway_environment(
    config: StackConfig,
    *,
    upstream_url: str,
    redis_url: str,
    cache_redis_url: str | None = None,
    instance_urls: Sequence[str] = (),
    api_keys_file: str | None = None,
    api_key_digests: Sequence[str] = (),
    host: str = "0.0.0.0",
    port: int | None = None,
    auth_disabled: bool = False,
    otel_headers: str | None = None,
) -> dict[str, str]:
    """`GATEWAY_*` variables for one gateway replica of this stack.

    `upstream_url` is the nginx balancer in front of the Ollama pool (least-conn
    routing); `instance_urls` are the Ollama instances themselves, which the gateway
    routes among with model-aware routing. `redis_url` is the state Redis (limits,
    quotas, usage, routing state; never evicts), `cache_redis_url` the response cache's
    own Redis (every platform runs one; without it the cache shares the state Redis);
    both include the password.
    Keys come from `api_keys_file` (the named keys with their limits) and/or
    `api_key_digests` (SHA-256 hex, default limits); without either, `auth_disabled`
    must say so explicitly.
    """
    if not (api_keys_file or api_key_digests or auth_disabled):
        raise ValueError(
            "gateway_environment: give api_keys_file or api_key_digests, "
            "or auth_disabled=True to run without keys"
        )
    gateway = config.gateway
    timeouts = gateway.timeouts
    env = {
        "GATEWAY_HOST": host,
        "GATEWAY_PORT": str(port if port is not None else gateway.port),
        "GATEWAY_WORKERS": str(gateway.workers),
        "GATEWAY_UPSTREAM_URL": upstream_url,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_AUTH_DISABLED": _flag(auth_disabled),
        "GATEWAY_CACHE_MODE": gateway.cache_mode,
        "GATEWAY_CACHE_TTL_SECONDS": str(gateway.cache_ttl_seconds),
        "GATEWAY_CACHE_STALE_SECONDS": str(gateway.cache_stale_seconds),
        "GATEWAY_CACHE_SCOPE": gateway.cache_scope,
        "GATEWAY_CACHE_MAX_ENTRY_BYTES": str(gateway.cache_max_entry_bytes),
        "GATEWAY_MAX_EMBED_INPUTS": str(gateway.max_embed_inputs),
        "GATEWAY_KEEP_ALIVE_MIN_SECONDS": _number(gateway.keep_alive_min_seconds),
        "GATEWAY_KEEP_ALIVE_MAX_SECONDS": _number(gateway.keep_alive_max_seconds),
        # One body cap for the whole path: the edge refuses first, the gateway agrees.
        "GATEWAY_MAX_BODY_BYTES": str(config.max_body_bytes),
        "GATEWAY_REQUESTS_PER_MINUTE": str(gateway.requests_per_minute),
        "GATEWAY_MAX_CONCURRENT_PER_KEY": str(gateway.max_concurrent_per_key),
        "GATEWAY_LIMITS_FAIL_CLOSED": _flag(gateway.limits_fail_closed),
        "GATEWAY_CONNECT_TIMEOUT_SECONDS": _number(timeouts.connect_seconds),
        "GATEWAY_FIRST_BYTE_TIMEOUT_SECONDS": _number(timeouts.first_byte_seconds),
        "GATEWAY_IDLE_TIMEOUT_SECONDS": _number(timeouts.idle_seconds),
        "GATEWAY_TOTAL_TIMEOUT_SECONDS": _number(timeouts.total_seconds),
        "GATEWAY_SHUTDOWN_GRACE_SECONDS": _number(gateway.shutdown_grace_seconds),
        "GATEWAY_LOG_PROMPTS": _flag(gateway.log_prompts),
        "GATEWAY_RUNNER_OPTIONS": gateway.runner_options,
        "GATEWAY_QUOTA_ESTIMATE_TOKENS": str(gateway.quotas.estimate_tokens),
        "GATEWAY_QUOTA_HITS_COST_TOKENS": _flag(gateway.quotas.hits_cost_tokens),
        "GATEWAY_USAGE_RETENTION_DAYS": str(gateway.usage_retention_days),
        "GATEWAY_TRACING": _flag(gateway.tracing.enabled),
    }
    semantic = gateway.semantic_cache
    env["GATEWAY_SEMANTIC_CACHE"] = _flag(semantic.enabled)
    if semantic.enabled:
        env |= {
            "GATEWAY_SEMANTIC_EMBED_MODEL": semantic.embed_model,
            "GATEWAY_SEMANTIC_THRESHOLD": _number(semantic.threshold),
            "GATEWAY_SEMANTIC_MODELS": ",".join(semantic.models),
            "GATEWAY_SEMANTIC_EMBED_TIMEOUT_SECONDS": _number(semantic.embed_timeout_seconds),
        }
    quotas = gateway.quotas
    if quotas.tokens_per_minute is not None:
        env["GATEWAY_TOKENS_PER_MINUTE"] = str(quotas.tokens_per_minute)
    if quotas.tokens_per_day is not None:
        env["GATEWAY_TOKENS_PER_DAY"] = str(quotas.tokens_per_day)
    tracing = gateway.tracing
    if tracing.enabled:
        # The OpenTelemetry SDK's own variables (see llm_gateway.tracing).
        assert tracing.endpoint is not None
        env |= {
            "OTEL_SERVICE_NAME": f"{config.name_prefix}-gateway",
            "OTEL_EXPORTER_OTLP_ENDPOINT": tracing.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": _number(tracing.sampling_ratio),
        }
        if otel_headers:
            env["OTEL_EXPORTER_OTLP_HEADERS"] = otel_headers
    if gateway.routing == "model-aware":
        if not instance_urls:
            raise ValueError("gateway_environment: model-aware routing needs instance_urls")
        queue = gateway.queue
        ollama = config.ollama
        env |= {
            "GATEWAY_ROUTING": "model-aware",
            "GATEWAY_OLLAMA_INSTANCES": ",".join(instance_urls),
            "GATEWAY_NUM_PARALLEL": str(ollama.num_parallel),
            "GATEWAY_MAX_LOADED_MODELS": str(ollama.max_loaded_models),
            "GATEWAY_POLL_SECONDS": _number(gateway.poll_seconds),
            "GATEWAY_QUEUE_MAX_DEPTH": str(queue.max_depth),
            "GATEWAY_QUEUE_DEADLINE_SECONDS": _number(queue.deadline_seconds),
            "GATEWAY_QUEUE_BURST": _number(queue.burst),
            "GATEWAY_LOAD_PATIENCE_SECONDS": _number(queue.load_patience_seconds),
            "GATEWAY_SHARE_IN_FLIGHT": _flag(gateway.share_in_flight),
            "GATEWAY_PREFIX_AFFINITY": _flag(gateway.prefix_affinity),
            "GATEWAY_AFFINITY_LOAD_SHARE": _number(gateway.affinity_load_share),
            "GATEWAY_AFFINITY_WAIT": _flag(gateway.affinity_wait),
        }
        if ollama.vram_gb is not None:
            env["GATEWAY_INSTANCE_VRAM_GB"] = _number(ollama.vram_gb)
    else:
        env["GATEWAY_ROUTING"] = "upstream"
    if cache_redis_url:
        env["GATEWAY_CACHE_REDIS_URL"] = cache_redis_url
    if api_keys_file:
        env["GATEWAY_API_KEYS_FILE"] = api_keys_file
    if api_key_digests:
        env["GATEWAY_API_KEYS"] = ",".join(d.lower() for d in api_key_digests)
    return env
