"""The gateway's environment: one function, read back by the gateway's own settings."""

from __future__ import annotations

import pytest
from llm_config import StackConfig, parse_stack_config
from llm_config.load import ConfigError
from llm_gateway.settings import Settings
from llm_stack.docker.gateway import KEYS_FILE, health_test
from llm_stack.gateway_env import SECRET_VARIABLES, gateway_environment

from tests.infra.stack_run import StackRun, prod_secrets

REDIS_URL = "redis://:pw-0123456789abcdef@llm-prod-redis:6379/0"
INSTANCES = ["http://llm-prod-ollama-0:11434", "http://llm-prod-ollama-1:11434"]


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_the_gateway_reads_back_every_value(
    prod_config: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = gateway_environment(
        prod_config,
        upstream_url="http://llm-prod-nginx:8080",
        redis_url=REDIS_URL,
        api_keys_file=KEYS_FILE,
        instance_urls=INSTANCES,
    )
    assert all(name.startswith(("GATEWAY_", "OTEL_")) for name in env)
    settings = settings_from(env, monkeypatch)
    gateway = prod_config.gateway
    assert settings.host == "0.0.0.0"
    assert settings.port == gateway.port
    assert settings.workers == gateway.workers
    assert settings.upstream_url == "http://llm-prod-nginx:8080"
    assert settings.redis_url == REDIS_URL
    assert str(settings.api_keys_file) == KEYS_FILE
    assert settings.auth_disabled is False
    assert settings.cache_mode == gateway.cache_mode
    assert settings.cache_ttl_seconds == gateway.cache_ttl_seconds
    assert settings.cache_stale_seconds == gateway.cache_stale_seconds
    assert settings.max_body_bytes == prod_config.max_body_bytes == 8 * 1024 * 1024
    assert settings.requests_per_minute == gateway.requests_per_minute
    assert settings.max_concurrent_per_key == gateway.max_concurrent_per_key
    assert settings.limits_fail_closed is gateway.limits_fail_closed
    assert settings.connect_timeout_seconds == gateway.timeouts.connect_seconds
    assert settings.first_byte_timeout_seconds == gateway.timeouts.first_byte_seconds
    assert settings.idle_timeout_seconds == gateway.timeouts.idle_seconds
    assert settings.total_timeout_seconds == gateway.timeouts.total_seconds
    assert settings.shutdown_grace_seconds == gateway.shutdown_grace_seconds
    assert settings.log_prompts is gateway.log_prompts
    assert settings.cache_redis_url is None  # none given here; every platform gives one
    assert settings.cache_scope == gateway.cache_scope
    assert settings.cache_max_entry_bytes == gateway.cache_max_entry_bytes
    assert settings.max_embed_inputs == gateway.max_embed_inputs
    assert settings.keep_alive_min_seconds == gateway.keep_alive_min_seconds
    assert settings.keep_alive_max_seconds == gateway.keep_alive_max_seconds


def test_semantic_cache_settings_reach_the_gateway(
    prod_config: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = gateway_environment(
        prod_config, upstream_url="http://b:8080", redis_url=REDIS_URL,
        api_keys_file=KEYS_FILE, instance_urls=INSTANCES,
    )  # fmt: skip
    assert env["GATEWAY_SEMANTIC_CACHE"] == "false"
    assert settings_from(env, monkeypatch).semantic_cache is False
    ollama = prod_config.ollama.model_copy(
        update={"models": [*prod_config.ollama.models, "all-minilm"]}
    )
    semantic = prod_config.gateway.semantic_cache.model_copy(
        update={"enabled": True, "threshold": 0.9, "models": list(ollama.models[:1])}
    )
    on = prod_config.model_copy(
        update={
            "ollama": ollama,
            "gateway": prod_config.gateway.model_copy(update={"semantic_cache": semantic}),
        }
    )
    env = gateway_environment(
        on, upstream_url="http://b:8080", redis_url=REDIS_URL,
        api_keys_file=KEYS_FILE, instance_urls=INSTANCES,
    )  # fmt: skip
    settings = settings_from(env, monkeypatch)
    assert settings.semantic_cache is True
    assert settings.semantic_embed_model == "all-minilm"
    assert settings.semantic_threshold == 0.9
    assert settings.semantic_models == list(ollama.models[:1])
    assert settings.semantic_embed_timeout_seconds == semantic.embed_timeout_seconds


def test_digests_and_explicit_no_auth(
    dev_config: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = "A" * 64
    env = gateway_environment(
        dev_config,
        upstream_url="http://n:8080",
        redis_url="redis://r:6379/0",
        api_key_digests=[digest],
        instance_urls=INSTANCES,
    )
    assert env["GATEWAY_API_KEYS"] == digest.lower()
    assert settings_from(env, monkeypatch).api_keys == [digest.lower()]
    open_env = gateway_environment(
        dev_config,
        upstream_url="http://n:8080",
        redis_url="redis://r:6379/0",
        auth_disabled=True,
        instance_urls=INSTANCES,
    )
    assert open_env["GATEWAY_AUTH_DISABLED"] == "true"
    assert "GATEWAY_API_KEYS" not in open_env
    assert "GATEWAY_API_KEYS_FILE" not in open_env


def test_keys_or_an_explicit_opt_out_are_required(dev_config: StackConfig) -> None:
    with pytest.raises(ValueError, match="auth_disabled=True"):
        gateway_environment(dev_config, upstream_url="http://n:8080", redis_url="redis://r:6379/0")


def test_deployed_replicas_get_exactly_this_environment(
    prod_run: StackRun, prod_config: StackConfig
) -> None:
    password = prod_secrets()["redisPassword"]
    expected = gateway_environment(
        prod_config,
        upstream_url=f"http://llm-prod-nginx:{prod_config.balancer.port}",
        redis_url=f"redis://:{password}@llm-prod-redis:6379/0",
        cache_redis_url=f"redis://:{password}@llm-prod-redis-cache:6379/0",
        api_keys_file=KEYS_FILE,
        instance_urls=[
            f"http://llm-prod-ollama-{i}:11434" for i in range(prod_config.ollama.instances)
        ],
    )
    for replica in prod_run.by_role("gateway"):
        env = dict(e.split("=", 1) for e in replica.plain("envs"))
        assert env == expected
        assert replica.plain("healthcheck")["tests"] == health_test(prod_config.gateway.port)
        keys = prod_run.uploads(replica)[KEYS_FILE]
        for entry in prod_secrets()["apiKeys"].values():
            assert entry["digest"] in keys
        assert replica.plain("stopTimeout") == int(prod_config.gateway.shutdown_grace_seconds) + 5
    assert {"GATEWAY_REDIS_URL", "GATEWAY_CACHE_REDIS_URL"} <= SECRET_VARIABLES


def test_dev_key_is_accepted_by_the_deployed_keys_file(dev_run: StackRun, tmp_path: object) -> None:
    from pathlib import Path

    from llm_gateway.keys import KeyRing

    from tests.infra.stack_run import unwrap

    (replica,) = dev_run.by_role("gateway")
    path = Path(str(tmp_path)) / "keys.json"
    path.write_text(dev_run.uploads(replica)[KEYS_FILE])
    ring = KeyRing.from_settings(Settings(api_keys_file=path))
    key = unwrap(dev_run.outputs["devApiKey"])
    found = ring.lookup(key)
    assert found is not None
    assert found.name == "dev"
    assert ring.lookup(key + "x") is None


def test_routing_quotas_and_tracing_are_read_back(
    prod_config: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = prod_config.model_copy(
        update={
            "gateway": prod_config.gateway.model_validate(
                {
                    **prod_config.gateway.model_dump(by_alias=True),
                    "routing": "model-aware",
                    "queue": {"maxDepth": 50, "deadlineSeconds": 30, "loadPatienceSeconds": 5,
                              "burst": 4},
                    "pollSeconds": 0.5,
                    "quotas": {"tokensPerMinute": 20000, "tokensPerDay": 1000000,
                               "estimateTokens": 128, "hitsCostTokens": True},
                    "usageRetentionDays": 30,
                    "tracing": {"enabled": True, "endpoint": "http://otel:4318",
                                "samplingRatio": 0.25},
                }
            ),
            "ollama": prod_config.ollama.model_copy(update={"vram_gb": 24.0}),
        }
    )  # fmt: skip
    instances = ["http://llm-prod-ollama-0:11434", "http://llm-prod-ollama-1:11434"]
    env = gateway_environment(
        config, upstream_url="http://nginx:8080", redis_url=REDIS_URL, api_keys_file=KEYS_FILE,
        instance_urls=instances, otel_headers="x-api-key=abc",
    )  # fmt: skip
    settings = settings_from(env, monkeypatch)
    assert settings.routing == "model-aware"
    assert settings.ollama_instances == instances
    assert settings.num_parallel == config.ollama.num_parallel
    assert settings.max_loaded_models == config.ollama.max_loaded_models
    assert settings.instance_vram_gb == 24.0
    assert (settings.queue_max_depth, settings.queue_deadline_seconds) == (50, 30)
    assert settings.queue_burst == 4
    assert settings.load_patience_seconds == 5
    assert settings.poll_seconds == 0.5
    assert (settings.tokens_per_minute, settings.tokens_per_day) == (20000, 1000000)
    assert settings.quota_estimate_tokens == 128
    assert settings.quota_hits_cost_tokens is True
    assert settings.usage_retention_days == 30
    assert settings.tracing is True
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4318"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "x-api-key=abc"
    assert "OTEL_EXPORTER_OTLP_HEADERS" in SECRET_VARIABLES
    with pytest.raises(ValueError, match="instance_urls"):
        gateway_environment(config, upstream_url="x", redis_url=REDIS_URL, api_keys_file=KEYS_FILE)


def test_least_conn_routes_everything_upstream(prod_config: StackConfig) -> None:
    least_conn = prod_config.model_copy(
        update={"gateway": prod_config.gateway.model_copy(update={"routing": "least-conn"})}
    )
    env = gateway_environment(
        least_conn, upstream_url="http://nginx:8080", redis_url=REDIS_URL, api_keys_file=KEYS_FILE
    )
    assert env["GATEWAY_ROUTING"] == "upstream"
    assert "GATEWAY_OLLAMA_INSTANCES" not in env
    assert not any(name.startswith("OTEL_") for name in env)


def test_the_tenancy_knobs_reach_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_stack_config(
        {
            "environment": "test",
            "ollama": {"models": ["llama3.2:1b"]},
            "gateway": {
                "cacheScope": "group",
                "cacheMaxEntryBytes": 65536,
                "maxEmbedInputs": 64,
                "keepAliveMinSeconds": 30,
                "keepAliveMaxSeconds": 600.5,
            },
        },
        "test",
    )
    env = gateway_environment(
        config, upstream_url="http://n:8080", redis_url=REDIS_URL, api_keys_file=KEYS_FILE,
        instance_urls=INSTANCES,
    )  # fmt: skip
    assert env["GATEWAY_CACHE_SCOPE"] == "group"
    assert env["GATEWAY_CACHE_MAX_ENTRY_BYTES"] == "65536"
    assert env["GATEWAY_MAX_EMBED_INPUTS"] == "64"
    assert env["GATEWAY_KEEP_ALIVE_MIN_SECONDS"] == "30"
    assert env["GATEWAY_KEEP_ALIVE_MAX_SECONDS"] == "600.5"
    settings = settings_from({**env, "GATEWAY_CACHE_REDIS_URL": "redis://c:6379/0"}, monkeypatch)
    assert settings.cache_scope == "group"
    assert settings.cache_redis_url == "redis://c:6379/0"
    assert settings.keep_alive_max_seconds == 600.5
    # The defaults: each key its own cache entries.
    assert gateway_environment(
        parse_stack_config({"ollama": {"models": ["m"]}}, "t"),
        upstream_url="x", redis_url=REDIS_URL, api_keys_file=KEYS_FILE, instance_urls=INSTANCES,
    )["GATEWAY_CACHE_SCOPE"] == "key"  # fmt: skip


def test_a_keep_alive_range_upside_down_is_refused() -> None:
    with pytest.raises(ConfigError, match="keepAliveMinSeconds must not exceed"):
        parse_stack_config(
            {
                "ollama": {"models": ["m"]},
                "gateway": {"keepAliveMinSeconds": 100, "keepAliveMaxSeconds": 10},
            },
            "t",
        )
