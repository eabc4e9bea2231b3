"""Redis: the response cache and rate-limit buckets, persistent and password-protected.

The password never appears in plain text: redis.conf (which holds `requirepass`) is
uploaded with secret content, and the healthcheck's redis-cli reads it from the
REDISCLI_AUTH variable, itself a secret Output, instead of a `-a` argument that would
sit in the container config and the state.
"""

from __future__ import annotations

from urllib.parse import quote

import pulumi
import pulumi_docker as docker
from llm_config.model import StackConfig
from llm_stack.components import containers as c
from llm_stack.components.labels import REDIS
from llm_stack.components.names import REDIS_PORT, StackNames
from llm_stack.components.network import StackNetworks
from llm_stack.components.volumes import StackVolumes

CONF_PATH = "/usr/local/etc/redis/redis.conf"
DATA_DIR = "/data"


def _quoted(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_redis_conf(config: StackConfig, password: str) -> str:
    """redis.conf of the stack's Redis (inside its container)."""
    redis = config.redis
    lines = [
        "# Rendered by llm-stack from the stack config; edits are overwritten.",
        f"port {REDIS_PORT}",
        # Reachable only on the internal network; the password guards it there too.
        "bind 0.0.0.0",
        f"dir {DATA_DIR}",
        f"appendonly {'yes' if redis.appendonly else 'no'}",
        "appendfsync everysec",
        f"maxmemory {redis.maxmemory_mb}mb",
        f"maxmemory-policy {redis.eviction_policy}",
        f"requirepass {_quoted(password)}",
    ]
    return "\n".join(lines) + "\n"


def redis_url(host: str, password: str, db: int = 0) -> str:
    return f"redis://:{quote(password, safe='')}@{host}:{REDIS_PORT}/{db}"


class RedisCache(pulumi.ComponentResource):
    container: docker.Container
    # redis://:<password>@<name>:6379/0, a secret.
    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        password: pulumi.Output[str],
        networks: StackNetworks,
        volumes: StackVolumes,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("llm-stack:redis:Cache", name, None, opts)
        names = StackNames.of(config)
        image = c.pinned_image("redis-image", config.redis.image, self)
        conf = c.secret_text(password.apply(lambda pw: render_redis_conf(config, pw)))
        auth_env = c.secret_env("REDISCLI_AUTH", password)
        self.container = docker.Container(
            "redis",
            name=names.redis,
            image=image.image_id,
            command=["redis-server", CONF_PATH],
            uploads=[c.upload(CONF_PATH, conf)],
            envs=[auth_env],
            volumes=[c.volume(volumes.redis, DATA_DIR)],
            networks_advanced=c.networks([networks.internal]),
            restart="unless-stopped",
            healthcheck=c.healthcheck(["CMD-SHELL", "redis-cli ping | grep -q PONG"]),
            labels=c.labels(REDIS, config.name_prefix),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.url = c.secret_text(password.apply(lambda pw: redis_url(names.redis, pw)))
        self.register_outputs({"name": self.container.name})
