"""What other packages may rely on of the gateway: a key's shape, its digest, and the
names of the `GATEWAY_*` variables the gateway reads.

The deployer (`llm_stack`) mints the local stack's dev key, writes digests into the keys
file and sets the gateway's environment; it imports this module and no other of the
gateway (`tests/test_layout.py` enforces it). Standard library only, so importing it
pulls in none of the gateway's dependencies.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "llmsk-"

# Every variable `llm_gateway.settings.Settings` reads is ENV_PREFIX + a field name in
# capitals; tests/gateway/test_contract.py keeps ENV_NAMES equal to the fields.
ENV_PREFIX = "GATEWAY_"
ENV_NAMES = frozenset(
    ENV_PREFIX + name
    for name in (
        "HOST",
        "PORT",
        "WORKERS",
        "UPSTREAM_URL",
        "UPSTREAM_CA_FILE",
        "REDIS_URL",
        "REDIS_CA_FILE",
        "CACHE_REDIS_URL",
        "CACHE_REDIS_CA_FILE",
        "API_KEYS",
        "API_KEYS_FILE",
        "AUTH_DISABLED",
        "CACHE_MODE",
        "CACHE_SCOPE",
        "CACHE_TTL_SECONDS",
        "CACHE_STALE_SECONDS",
        "CACHE_MAX_ENTRY_BYTES",
        "SEMANTIC_CACHE",
        "SEMANTIC_EMBED_MODEL",
        "SEMANTIC_THRESHOLD",
        "SEMANTIC_MODELS",
        "SEMANTIC_EMBED_TIMEOUT_SECONDS",
        "SEMANTIC_MAX_CANDIDATES",
        "MAX_BODY_BYTES",
        "MAX_MESSAGES",
        "KEEP_ALIVE_MIN_SECONDS",
        "KEEP_ALIVE_MAX_SECONDS",
        "MAX_EMBED_INPUTS",
        "REQUESTS_PER_MINUTE",
        "MAX_CONCURRENT_PER_KEY",
        "TOKENS_PER_MINUTE",
        "TOKENS_PER_DAY",
        "QUOTA_ESTIMATE_TOKENS",
        "QUOTA_HITS_COST_TOKENS",
        "USAGE_RETENTION_DAYS",
        "LIMITS_FAIL_CLOSED",
        "CONNECT_TIMEOUT_SECONDS",
        "FIRST_BYTE_TIMEOUT_SECONDS",
        "IDLE_TIMEOUT_SECONDS",
        "TOTAL_TIMEOUT_SECONDS",
        "REDIS_TIMEOUT_SECONDS",
        "REDIS_RETRY_AFTER_SECONDS",
        "UPSTREAM_MAX_CONNECTIONS",
        "ROUTING",
        "OLLAMA_INSTANCES",
        "NUM_PARALLEL",
        "MAX_LOADED_MODELS",
        "INSTANCE_VRAM_GB",
        "POLL_SECONDS",
        "QUEUE_MAX_DEPTH",
        "QUEUE_DEADLINE_SECONDS",
        "QUEUE_BURST",
        "LOAD_PATIENCE_SECONDS",
        "SHARE_IN_FLIGHT",
        "SHARE_HEARTBEAT_SECONDS",
        "RUNNER_OPTIONS",
        "PREFIX_AFFINITY",
        "AFFINITY_LOAD_SHARE",
        "AFFINITY_WAIT",
        "AFFINITY_CACHE_TOKENS",
        "MODEL_REFRESH_SECONDS",
        "SHUTDOWN_GRACE_SECONDS",
        "TRACING",
        "ACCESS_LOG",
        "LOG_PROMPTS",
        "LOG_LEVEL",
    )
)


def digest_of(key: str) -> str:
    """The SHA-256 hex digest the gateway looks a key up by (the key is never stored)."""
    return hashlib.sha256(key.encode()).hexdigest()


def mint_key() -> str:
    """A new key: 256 bits from the OS's CSPRNG, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)
