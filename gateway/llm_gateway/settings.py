"""The gateway's settings: environment variables prefixed `GATEWAY_`, read once at start."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from llm_gateway.contract import ENV_PREFIX


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    upstream_url: str = "http://127.0.0.1:11434"
    # PEM bundle of the CAs trusted for an https:// upstream (default: the system's).
    upstream_ca_file: Path | None = None
    # State: limits, quota debts, usage, routing state (run it with noeviction).
    redis_url: str = "redis://127.0.0.1:6379/0"
    # PEM bundle of the CAs trusted for a rediss:// Redis (default: the system's).
    redis_ca_file: Path | None = None
    # The response cache's own Redis (allkeys-lru), so that cache pressure can never
    # evict state; unset: the cache shares GATEWAY_REDIS_URL (said at start and in /ready).
    cache_redis_url: str | None = None
    cache_redis_ca_file: Path | None = None

    # SHA-256 hex digests of accepted keys; the plain keys are never stored.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys_file: Path | None = None
    auth_disabled: bool = False

    cache_mode: Literal["deterministic", "all", "off"] = "deterministic"
    # Who shares a cache entry (and a coalesced call): every key ("shared": a hit then
    # tells any key that someone sent the same request), each key alone ("key"), or
    # the keys of one `cacheGroup` in the keys file ("group"; a key without one: alone).
    cache_scope: Literal["shared", "key", "group"] = "key"
    cache_ttl_seconds: int = Field(3600, ge=1)
    # Expired entries are kept this much longer, to be served if the upstream fails.
    cache_stale_seconds: int = Field(86400, ge=0)
    # A bigger answer is streamed through, never stored (and never held whole).
    cache_max_entry_bytes: int = Field(1024 * 1024, ge=1024)
    # The semantic cache (llm_gateway.semantic): off unless turned on; then for the
    # models listed (none listed: every model) and the keys whose `semanticCache` is true.
    semantic_cache: bool = False
    semantic_embed_model: str = "all-minilm"
    semantic_threshold: float = Field(0.85, gt=0, le=1)
    semantic_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # An embedding slower than this is a miss (it never holds the request longer).
    semantic_embed_timeout_seconds: float = Field(0.5, gt=0, le=30)
    # Candidates kept per scope (requests equal but for their last user message).
    semantic_max_candidates: int = Field(64, ge=1, le=1024)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # A conversation longer than this is an abuse of the queue, not a chat.
    max_messages: int = Field(10000, ge=1)
    # A request's keep_alive is clamped to this range (seconds); a model stays loaded
    # for every key, so none may pin it for ever or unload it after its own answer.
    # Unload-only requests (keep_alive 0, nothing to generate) are for admin keys.
    keep_alive_min_seconds: float = Field(60.0, ge=0)
    keep_alive_max_seconds: float = Field(3600.0, gt=0)
    # Inputs of one embedding request: each is a vector in the answer (10,000 short
    # inputs are a 233 MB answer).
    max_embed_inputs: int = Field(2048, ge=1)

    # Defaults for keys that do not set their own limits.
    requests_per_minute: int = Field(600, ge=1)
    max_concurrent_per_key: int = Field(16, ge=1)
    # Token quotas (prompt + completion) of keys that do not set their own; unset: none.
    tokens_per_minute: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1)
    # A request's completion is estimated at this many tokens when it does not say
    # (num_predict / max_tokens); admission charges the estimate, the end settles it.
    quota_estimate_tokens: int = Field(256, ge=1)
    # Cache hits (and coalesced followers) cost no tokens unless this is true.
    quota_hits_cost_tokens: bool = False
    # Usage per key, model and day is kept this long in Redis (0: not kept).
    usage_retention_days: int = Field(90, ge=0, le=3650)
    limits_fail_closed: bool = False

    connect_timeout_seconds: float = Field(5.0, gt=0)
    first_byte_timeout_seconds: float = Field(120.0, gt=0)
    idle_timeout_seconds: float = Field(60.0, gt=0)
    total_timeout_seconds: float = Field(900.0, gt=0)
    # Redis is a helper: a slow Redis must never hold a request for long.
    redis_timeout_seconds: float = Field(0.25, gt=0)
    # After a Redis failure, skip Redis for this long before trying again.
    redis_retry_after_seconds: float = Field(1.0, ge=0)
    upstream_max_connections: int = Field(256, ge=1)

    # upstream: everything to GATEWAY_UPSTREAM_URL (the nginx least_conn balancer, or
    # one Ollama); model-aware: the gateway picks among GATEWAY_OLLAMA_INSTANCES the
    # one with the model loaded and a free slot, and queues fairly when none has.
    routing: Literal["upstream", "model-aware"] = "upstream"
    ollama_instances: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # What each Ollama instance runs with (its OLLAMA_NUM_PARALLEL and
    # OLLAMA_MAX_LOADED_MODELS), and its GPU memory if known (GB).
    num_parallel: int = Field(1, ge=1, le=64)
    max_loaded_models: int = Field(3, ge=1, le=64)
    instance_vram_gb: float | None = Field(None, gt=0)
    # How often each instance's /api/ps is read.
    poll_seconds: float = Field(1.5, gt=0)
    queue_max_depth: int = Field(1000, ge=1)
    queue_deadline_seconds: float = Field(120.0, gt=0)
    # Requests of credit a key under its fair share banks to go first when it bursts
    # (`routing/fair_queue.py`); 0 is plain start-time fair queueing.
    queue_burst: float = Field(12.0, ge=0, le=10000)
    # How long a model loaded nowhere waits before a busy instance is drained for it.
    load_patience_seconds: float = Field(20.0, ge=0)
    # Replicas tell each other (through Redis) what they have in flight and waiting, so
    # that together they take no more than each instance's slots, in priority order.
    share_in_flight: bool = True
    share_heartbeat_seconds: float = Field(1.0, gt=0)
    # strip: remove the runner options that force a model reload (num_ctx, num_batch,
    # num_gpu, main_gpu, use_mmap, num_thread) from every request; pass: keep them.
    runner_options: Literal["strip", "pass"] = "strip"
    # Prefix affinity (model-aware routing): a request that can start now goes to the
    # instance likely to hold its prompt's prefix in its caches, unless that instance
    # would be over `affinity_load_share` x the mean load; `affinity_cache_tokens`: what
    # one instance's caches hold (its slots' contexts and llama-server's host cache).
    prefix_affinity: bool = True
    affinity_load_share: float = Field(1.25, ge=1.0, le=10.0)
    # A request whose prefix's holder is busy waits for it when a slot there is expected
    # to free before the prefill it would pay elsewhere (`routing/holds.py`).
    affinity_wait: bool = True
    affinity_cache_tokens: int = Field(65536, ge=1024)

    # How often /api/tags is read to learn model digests (a re-pull changes the key).
    model_refresh_seconds: float = Field(10.0, gt=0)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    # OpenTelemetry traces over OTLP/HTTP, configured by the standard OTEL_* variables
    # (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, ...). Off: no span is created.
    tracing: bool = False
    access_log: bool = True
    log_prompts: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _digests_only(cls, value: list[str]) -> list[str]:
        for digest in value:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(
                    "GATEWAY_API_KEYS holds SHA-256 hex digests of keys (64 hex characters), "
                    "not the keys themselves; mint one with `llm-gateway keys new --name NAME`"
                )
        return value

    @field_validator("semantic_models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("upstream_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _base_url("GATEWAY_UPSTREAM_URL", value)

    @field_validator("ollama_instances", mode="before")
    @classmethod
    def _split_instances(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("ollama_instances")
    @classmethod
    def _instance_urls(cls, value: list[str]) -> list[str]:
        # Each entry is a base URL (named by its host:port), or `name=URL`.
        entries = [named_instance(entry) for entry in value]
        for name, explicit, _ in entries:
            if explicit and not _INSTANCE_NAME.fullmatch(name):
                raise ValueError(
                    f"GATEWAY_OLLAMA_INSTANCES: {name!r} is not a name (letters, digits, . _ : -)"
                )
        urls = [_base_url("GATEWAY_OLLAMA_INSTANCES", url) for _, _, url in entries]
        names = [name for name, _, _ in entries]
        if len(set(urls)) != len(urls) or len(set(names)) != len(names):
            raise ValueError("GATEWAY_OLLAMA_INSTANCES names an instance twice")
        return [
            f"{name}={url}" if explicit else url
            for (name, explicit, _), url in zip(entries, urls, strict=True)
        ]

    @property
    def named_instances(self) -> list[tuple[str, str]]:
        """(name, base URL) of each Ollama instance, in the order given."""
        return [(name, url) for name, _, url in map(named_instance, self.ollama_instances)]

    @field_validator("cache_redis_url", mode="before")
    @classmethod
    def _unset_if_empty(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("redis_url", "cache_redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("a Redis URL must start with redis://, rediss:// or unix://")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not value or any(c.isspace() for c in value):
                raise ValueError(f"GATEWAY_HOST {value!r} is not an address") from None
        return value

    @model_validator(mode="after")
    def _instances_for_model_aware(self) -> Settings:
        if self.routing == "model-aware" and not self.ollama_instances:
            raise ValueError(
                "GATEWAY_ROUTING=model-aware needs GATEWAY_OLLAMA_INSTANCES "
                "(comma-separated base URLs of the Ollama instances)"
            )
        return self

    @model_validator(mode="after")
    def _keep_alive_range(self) -> Settings:
        if self.keep_alive_min_seconds > self.keep_alive_max_seconds:
            raise ValueError(
                "GATEWAY_KEEP_ALIVE_MIN_SECONDS must be <= GATEWAY_KEEP_ALIVE_MAX_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _ordered_timeouts(self) -> Settings:
        if self.total_timeout_seconds < self.first_byte_timeout_seconds:
            raise ValueError(
                "GATEWAY_TOTAL_TIMEOUT_SECONDS must be >= GATEWAY_FIRST_BYTE_TIMEOUT_SECONDS"
            )
        return self

    @property
    def has_keys(self) -> bool:
        return bool(self.api_keys) or self.api_keys_file is not None


def _base_url(name: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{name} must start with http:// or https://")
    url = urlsplit(value)
    if not url.hostname:
        raise ValueError(f"{name} names no host")
    url.port  # noqa: B018 - raises ValueError on a port that is not one
    return value.rstrip("/")


# What an explicit instance name may hold: it is a metric label and a URL path segment.
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}")


def named_instance(entry: str) -> tuple[str, bool, str]:
    """(name, named explicitly, URL) of a GATEWAY_OLLAMA_INSTANCES entry: `name=URL`,
    or a bare URL named by what follows its scheme (host:port). The name labels the
    instance's metrics and is what an admin drains it by."""
    name, sep, url = entry.partition("=")
    if sep and "://" not in name:
        return name.strip(), True, url.strip()
    return entry.split("://", 1)[-1].rstrip("/"), False, entry
