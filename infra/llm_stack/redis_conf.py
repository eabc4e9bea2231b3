"""redis.conf of a stack's two Redis servers, decided in one place for every way it runs.

The state server (limits, quota debts, usage, routing state) never evicts and always
keeps its append-only file: when full, writes fail rather than lose a debt or a day of
usage. The cache server evicts by the configured policy within its own maxmemory, so
no cached answer, however large, can push state out.

The Docker and Kubernetes platforms put it in the container (all interfaces of the
internal network, the image's data dir); the local stack runs it on loopback with
its own port and data dir. Everything else comes from the stack config.
"""

from __future__ import annotations

from typing import Final, Literal

from llm_config.model import StackConfig

RedisRole = Literal["state", "cache"]
ROLES: Final[tuple[RedisRole, ...]] = ("state", "cache")
STATE_EVICTION_POLICY: Final = "noeviction"


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def maxmemory_mb(config: StackConfig, role: RedisRole) -> int:
    return config.redis.state.maxmemory_mb if role == "state" else config.redis.maxmemory_mb


def render_redis_conf(
    config: StackConfig,
    password: str,
    *,
    role: RedisRole,
    port: int,
    bind: str,
    data_dir: str,
) -> str:
    redis = config.redis
    state = role == "state"
    appendonly = True if state else redis.appendonly
    policy = STATE_EVICTION_POLICY if state else redis.eviction_policy
    lines = [
        f"# Rendered by llm-stack from the stack config ({role} server); edits are overwritten.",
        f"port {port}",
        # Reachable only on the internal network (or loopback); the password guards it.
        f"bind {bind}",
        "protected-mode yes",
        f"dir {_quoted(data_dir)}",
        f"appendonly {'yes' if appendonly else 'no'}",
        "appendfsync everysec",
        f"maxmemory {maxmemory_mb(config, role)}mb",
        f"maxmemory-policy {policy}",
        f"requirepass {_quoted(password)}",
    ]
    return "\n".join(lines) + "\n"
