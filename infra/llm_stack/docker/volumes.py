"""Named volumes: the data that outlives any container of the stack.

Pulumi owns them, so `pulumi destroy` removes them too; protect them
(`pulumi state protect`) on a host whose models or metrics you want to keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from llm_stack.shared.labels import STACK_LABEL
from llm_stack.shared.names import StackNames


@dataclass(frozen=True)
class VolumesArgs:
    names: StackNames
    # Grafana's data volume exists only when Grafana does.
    grafana: bool


class StackVolumes(pulumi.ComponentResource):
    models: docker.Volume
    redis: docker.Volume
    redis_cache: docker.Volume
    prometheus: docker.Volume
    grafana: docker.Volume | None

    def __init__(
        self, name: str, args: VolumesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llm-stack:storage:Volumes", name, None, opts)
        names = args.names
        child = pulumi.ResourceOptions(parent=self)

        def volume(resource_name: str, volume_name: str) -> docker.Volume:
            return docker.Volume(
                resource_name,
                name=volume_name,
                labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=names.prefix)],
                opts=child,
            )

        self.models = volume("models", names.models_volume)
        self.redis = volume("redis-data", names.redis_volume)
        self.redis_cache = volume("redis-cache-data", names.redis_cache_volume)
        self.prometheus = volume("prometheus-data", names.prometheus_volume)
        self.grafana = volume("grafana-data", names.grafana_volume) if args.grafana else None
        outputs: dict[str, pulumi.Output[str]] = {
            "models": self.models.name,
            "redis": self.redis.name,
            "redisCache": self.redis_cache.name,
            "prometheus": self.prometheus.name,
        }
        if self.grafana is not None:
            outputs["grafana"] = self.grafana.name
        self.register_outputs(outputs)
