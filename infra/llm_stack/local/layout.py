"""Where a local run keeps its files: one work dir, one subdirectory per service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WORKDIR_NAME = ".local-stack"


def default_workdir(base: Path, stack: str) -> Path:
    """`<project>/.local-stack/<stack>` (gitignored), so stacks never share files."""
    return base / WORKDIR_NAME / stack


@dataclass(frozen=True)
class Layout:
    workdir: Path

    @property
    def lock(self) -> Path:
        return self.workdir / ".lock"

    @property
    def credentials(self) -> Path:
        """The dev keys and the Redis password, kept across runs (0600)."""
        return self.workdir / "credentials.json"

    @property
    def redis_url_file(self) -> Path:
        """The state Redis's URL with its password (0600), for `llm-gateway usage`."""
        return self.workdir / "redis-url"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    @property
    def tls(self) -> Path:
        return self.workdir / "tls"

    @property
    def cert(self) -> Path:
        return self.tls / "edge.crt"

    @property
    def key(self) -> Path:
        return self.tls / "edge.key"

    @property
    def nginx(self) -> Path:
        """nginx's prefix: pid file and temp paths (runtime_dir of the topology)."""
        return self.workdir / "nginx"

    @property
    def nginx_conf(self) -> Path:
        return self.nginx / "nginx.conf"

    @property
    def redis(self) -> Path:
        """Redis's data dir (the AOF survives restarts, like the Docker volume)."""
        return self.workdir / "redis"

    @property
    def redis_conf(self) -> Path:
        return self.workdir / "redis.conf"

    @property
    def redis_cache(self) -> Path:
        """The response cache's Redis: its own data dir."""
        return self.workdir / "redis-cache"

    @property
    def redis_cache_conf(self) -> Path:
        return self.workdir / "redis-cache.conf"

    @property
    def gateway(self) -> Path:
        return self.workdir / "gateway"

    @property
    def keys_file(self) -> Path:
        return self.gateway / "keys.json"

    def gateway_metrics(self, index: int) -> Path:
        """prometheus-client's multiprocess dir of a replica with several workers."""
        return self.gateway / f"metrics-{index}"

    @property
    def prometheus(self) -> Path:
        return self.workdir / "prometheus"

    @property
    def prometheus_data(self) -> Path:
        return self.prometheus / "data"

    @property
    def grafana(self) -> Path:
        return self.workdir / "grafana"

    @property
    def grafana_provisioning(self) -> Path:
        return self.grafana / "provisioning"

    @property
    def grafana_dashboards(self) -> Path:
        return self.grafana / "dashboards"

    @property
    def outputs(self) -> Path:
        return self.workdir / "outputs.json"
