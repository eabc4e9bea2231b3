"""redis.conf of a stack's Redis, decided in one place for every way the stack runs.

The Docker and Kubernetes platforms put it in the container (all interfaces of the
internal network, the image's data dir); the local stack runs it on loopback with
its own port and data dir. Everything else comes from the stack config.
"""

from __future__ import annotations

from llm_config.model import StackConfig


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_redis_conf(
    config: StackConfig, password: str, *, port: int, bind: str, data_dir: str
) -> str:
    redis = config.redis
    lines = [
        "# Rendered by llm-stack from the stack config; edits are overwritten.",
        f"port {port}",
        # Reachable only on the internal network (or loopback); the password guards it.
        f"bind {bind}",
        "protected-mode yes",
        f"dir {_quoted(data_dir)}",
        f"appendonly {'yes' if redis.appendonly else 'no'}",
        "appendfsync everysec",
        f"maxmemory {redis.maxmemory_mb}mb",
        f"maxmemory-policy {redis.eviction_policy}",
        f"requirepass {_quoted(password)}",
    ]
    return "\n".join(lines) + "\n"
