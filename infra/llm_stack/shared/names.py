"""Names of every container, network and volume of a stack, derived from its prefix.

Fixed names make the stack readable on the host (`docker ps`) and let containers
reach each other by name on the internal network; the live checks read them from
the stack outputs rather than guessing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from llm_config.model import StackConfig

# Ports the services listen on inside their containers.
OLLAMA_PORT = 11434
REDIS_PORT = 6379
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
NGINX_EXPORTER_PORT = 9113
GPU_EXPORTER_PORT = 9400
# Where the gateway reads its keys file inside its container or pod.
KEYS_FILE = "/etc/llm-gateway/keys.json"


@dataclass(frozen=True)
class StackNames:
    prefix: str

    @classmethod
    def of(cls, config: StackConfig) -> StackNames:
        return cls(config.name_prefix)

    def ollama(self, index: int) -> str:
        return f"{self.prefix}-ollama-{index}"

    def gateway(self, index: int) -> str:
        return f"{self.prefix}-gateway-{index}"

    def model_puller(self, models: Sequence[str], image: str | None = None) -> str:
        """Named after its model list: a new list gets a new puller, created while the old
        (exited) one still exists, so the pool never goes down for a model change.

        On Docker the image goes into the name too: a new Ollama image replaces the
        puller, and a replacement under the same name would collide with the old one
        (a delete-before-replace puller would take every instance down with it, since
        their gate label reads its exit code)."""
        parts = [*models] if image is None else [image, *models]
        digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]
        return f"{self.prefix}-model-puller-{digest}"

    @property
    def redis(self) -> str:
        """The state Redis (limits, quotas, usage, routing state)."""
        return f"{self.prefix}-redis"

    @property
    def redis_cache(self) -> str:
        """The response cache's Redis."""
        return f"{self.prefix}-redis-cache"

    @property
    def nginx(self) -> str:
        return f"{self.prefix}-nginx"

    @property
    def prometheus(self) -> str:
        return f"{self.prefix}-prometheus"

    @property
    def grafana(self) -> str:
        return f"{self.prefix}-grafana"

    @property
    def nginx_exporter(self) -> str:
        return f"{self.prefix}-nginx-exporter"

    @property
    def gpu_exporter(self) -> str:
        return f"{self.prefix}-gpu-exporter"

    @property
    def internal_network(self) -> str:
        return f"{self.prefix}-internal"

    @property
    def edge_network(self) -> str:
        return f"{self.prefix}-edge"

    @property
    def egress_network(self) -> str:
        return f"{self.prefix}-egress"

    @property
    def models_volume(self) -> str:
        return f"{self.prefix}-models"

    @property
    def redis_volume(self) -> str:
        return f"{self.prefix}-redis-data"

    @property
    def redis_cache_volume(self) -> str:
        return f"{self.prefix}-redis-cache-data"

    @property
    def prometheus_volume(self) -> str:
        return f"{self.prefix}-prometheus-data"

    @property
    def grafana_volume(self) -> str:
        return f"{self.prefix}-grafana-data"
