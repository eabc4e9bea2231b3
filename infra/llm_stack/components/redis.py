"""Redis: the response cache and rate-limit buckets, persistent and password-protected.

The password is in two uploaded files, both secret content in the Pulumi state and
mode 0440 root:root in the container: redis.conf (`requirepass`) and the file the
healthcheck's redis-cli reads it from. The container runs as `redis:root` (uid 999,
gid 0), so Redis reads them through its group and nothing else in the container can;
the image's entrypoint only drops from root to redis when started as root. No
environment variable carries it: `docker inspect` shows neither password nor URL.
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
from llm_stack.redis_conf import render_redis_conf as redis_conf

CONF_PATH = "/usr/local/etc/redis/redis.conf"
# The password alone, for the healthcheck's redis-cli (REDISCLI_AUTH, never an argv).
CLI_PASSWORD_PATH = "/usr/local/etc/redis/cli-password"  # noqa: S105 (a path)
# Read by group root only (see RUN_AS).
SECRET_FILE_MODE = "0440"  # noqa: S105 (a file mode)
DATA_DIR = "/data"
# The image's redis user with group root: reads the root-owned 0440 files above, owns
# /data (created redis-owned in the image, so a new volume starts out that way).
RUN_AS = "redis:root"


def health_test(password_path: str = CLI_PASSWORD_PATH) -> list[str]:
    """PING with the password read from a file at each check (not from the environment)."""
    return ["CMD-SHELL", f'REDISCLI_AUTH="$(cat {password_path})" redis-cli ping | grep -q PONG']


def render_redis_conf(config: StackConfig, password: str) -> str:
    """redis.conf of the stack's Redis (inside its container)."""
    return redis_conf(config, password, port=REDIS_PORT, bind="0.0.0.0", data_dir=DATA_DIR)


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
        self.container = docker.Container(
            "redis",
            name=names.redis,
            image=image.image_id,
            user=RUN_AS,
            command=["redis-server", CONF_PATH],
            uploads=[
                c.upload(CONF_PATH, conf, permissions=SECRET_FILE_MODE),
                c.upload(CLI_PASSWORD_PATH, c.secret_text(password), permissions=SECRET_FILE_MODE),
            ],
            volumes=[c.volume(volumes.redis, DATA_DIR)],
            networks_advanced=c.networks([networks.internal]),
            restart="unless-stopped",
            healthcheck=c.healthcheck(health_test()),
            labels=c.labels(REDIS, config.name_prefix),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.url = c.secret_text(password.apply(lambda pw: redis_url(names.redis, pw)))
        self.register_outputs({"name": self.container.name})
