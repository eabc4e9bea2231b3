"""Redis inside a container, the same on Docker and Kubernetes: paths, healthcheck, URL.

The text of redis.conf is decided in `llm_stack.redis_conf` for every way the stack
runs; this module fixes what is true inside the image (its data dir, where the
password files are uploaded, the port).
"""

from __future__ import annotations

from urllib.parse import quote

from llm_config.model import StackConfig

from llm_stack.redis_conf import RedisRole
from llm_stack.redis_conf import render_redis_conf as redis_conf
from llm_stack.shared.names import REDIS_PORT

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


# Every IPv4 address, and IPv6 where the kernel has it (`-`: optional, Redis >= 7).
BIND_DUAL_STACK = "* -::*"


def render_redis_conf(
    config: StackConfig, role: RedisRole, password: str, *, bind: str = "0.0.0.0"
) -> str:
    """redis.conf of the stack's state or cache Redis (inside its container)."""
    return redis_conf(config, password, role=role, port=REDIS_PORT, bind=bind, data_dir=DATA_DIR)


def redis_url(host: str, password: str, db: int = 0) -> str:
    return f"redis://:{quote(password, safe='')}@{host}:{REDIS_PORT}/{db}"
