"""Redis: two servers, persistent and password-protected, one component each.

The state server (`redis`: limits, quota debts, usage, routing state) never evicts;
the response cache's (`redis-cache`) evicts within its own maxmemory. A large cached
answer therefore can never push a quota debt or a day of usage out.

The password is in two uploaded files, both secret content in the Pulumi state and
mode 0440 root:root in the container: redis.conf (`requirepass`) and the file the
healthcheck's redis-cli reads it from. The container runs as `redis:root` (uid 999,
gid 0), so Redis reads them through its group and nothing else in the container can;
the image's entrypoint only drops from root to redis when started as root. No
environment variable carries it: `docker inspect` shows neither password nor URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from llm_stack.docker import containers as c
from llm_stack.docker.network import StackNetworks
from llm_stack.shared.labels import REDIS
from llm_stack.shared.names import StackNames
from llm_stack.shared.redis import (
    CLI_PASSWORD_PATH,
    CONF_PATH,
    DATA_DIR,
    RUN_AS,
    SECRET_FILE_MODE,
    health_test,
    redis_url,
)
from llm_stack.shared.secrets import secret_text


@dataclass(frozen=True)
class RedisCacheArgs:
    names: StackNames
    image: str
    # The container's name and its data volume (state and cache differ).
    container_name: str
    volume: docker.Volume
    # redis.conf for a password (`render_redis_conf` with the stack's settings).
    render_conf: Callable[[str], str]
    password: pulumi.Output[str]
    networks: StackNetworks
    # The role label: shared.labels.REDIS (state) or REDIS_CACHE.
    role: str = REDIS


class RedisCache(pulumi.ComponentResource):
    container: docker.Container
    # redis://:<password>@<name>:6379/0, a secret.
    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: RedisCacheArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llm-stack:redis:Cache", name, None, opts)
        names, password = args.names, args.password
        image = c.pinned_image(f"{name}-image", args.image, self)
        conf = secret_text(password.apply(args.render_conf))
        self.container = docker.Container(
            name,
            name=args.container_name,
            image=image.image_id,
            user=RUN_AS,
            command=["redis-server", CONF_PATH],
            uploads=[
                c.upload(CONF_PATH, conf, permissions=SECRET_FILE_MODE),
                c.upload(CLI_PASSWORD_PATH, secret_text(password), permissions=SECRET_FILE_MODE),
            ],
            volumes=[c.volume(args.volume, DATA_DIR)],
            networks_advanced=c.networks([args.networks.internal]),
            restart="unless-stopped",
            healthcheck=c.healthcheck(health_test()),
            labels=c.labels(args.role, names.prefix),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        host = args.container_name
        self.url = secret_text(password.apply(lambda pw: redis_url(host, pw)))
        self.register_outputs({"name": self.container.name})
