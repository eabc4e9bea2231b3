"""The whole Docker stack as one component: networks, volumes, credentials, services."""

from __future__ import annotations

import functools
from typing import Any

import pulumi
from llm_config.model import StackConfig

from llm_stack.docker.edge import Edge, EdgeArgs, render_edge_conf
from llm_stack.docker.gateway import GatewayService, GatewayServiceArgs, environment_entries
from llm_stack.docker.monitoring import (
    Monitoring,
    MonitoringArgs,
    grafana_uploads,
    grafana_url,
    prometheus_command,
    prometheus_uploads,
)
from llm_stack.docker.network import NetworksArgs, StackNetworks
from llm_stack.docker.ollama import OllamaPool, OllamaPoolArgs
from llm_stack.docker.redis import RedisCache, RedisCacheArgs
from llm_stack.docker.rollout import GatewayAdmin
from llm_stack.docker.volumes import StackVolumes, VolumesArgs
from llm_stack.ollama_env import ollama_environment
from llm_stack.pulumi_config import StackSecrets
from llm_stack.shared.labels import REDIS_CACHE
from llm_stack.shared.names import OLLAMA_PORT, StackNames
from llm_stack.shared.redis import render_redis_conf
from llm_stack.shared.secrets import StackCredentials
from llm_stack.shared.tls import EdgeCertificate

COMPONENT_TYPE = "llm-stack:index:Stack"
# Stack outputs that are secrets (exported, but kept out of the component's outputs).
SECRET_OUTPUTS = ("devApiKey", "grafanaAdminPassword")


class DockerStack(pulumi.ComponentResource):
    """Networks, volumes, credentials and every service of one stack."""

    outputs: dict[str, Any]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        secrets: StackSecrets,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names = StackNames.of(config)
        networks = StackNetworks(
            "networks",
            NetworksArgs(names=names, internal_subnet=config.network.internal_subnet),
            opts=child,
        )
        volumes = StackVolumes(
            "volumes",
            VolumesArgs(names=names, grafana=config.monitoring.grafana.enabled),
            opts=child,
        )
        credentials = StackCredentials("credentials", config, secrets, opts=child)
        certificate = EdgeCertificate("edge-certificate", config, secrets, opts=child)
        pool = OllamaPool(
            "ollama",
            OllamaPoolArgs(
                names=names,
                ollama=config.ollama,
                environment=ollama_environment(config),
                networks=networks,
                volumes=volumes,
                admin=GatewayAdmin(
                    gateways=[names.gateway(i) for i in range(config.gateway.replicas)],
                    gateway_port=config.gateway.port,
                    ollama_port=OLLAMA_PORT,
                    # A generation in flight may last the gateway's whole request limit.
                    drain_timeout_seconds=config.gateway.timeouts.total_seconds,
                ),
            ),
            opts=child,
        )
        # The state Redis keeps the names it always had (its data stays where it is).
        redis = RedisCache(
            "redis",
            RedisCacheArgs(
                names=names,
                image=config.redis.image,
                container_name=names.redis,
                volume=volumes.redis,
                render_conf=functools.partial(render_redis_conf, config, "state"),
                password=credentials.redis_password,
                networks=networks,
            ),
            opts=child,
        )
        redis_cache = RedisCache(
            "redis-cache",
            RedisCacheArgs(
                names=names,
                image=config.redis.image,
                container_name=names.redis_cache,
                volume=volumes.redis_cache,
                render_conf=functools.partial(render_redis_conf, config, "cache"),
                password=credentials.redis_password,
                networks=networks,
                role=REDIS_CACHE,
            ),
            opts=child,
        )
        gateway = GatewayService(
            "gateway",
            GatewayServiceArgs(
                names=names,
                gateway=config.gateway,
                environment=environment_entries(
                    config,
                    # least-conn: the nginx balancer; model-aware: the instances themselves.
                    upstream_url=f"http://{names.nginx}:{config.balancer.port}",
                    instance_urls=[f"http://{address}" for address in pool.addresses],
                    redis_url=redis.url,
                    cache_redis_url=redis_cache.url,
                    otel_headers=secrets.otel_headers,
                ),
                keys_file=credentials.api_keys_file,
                networks=networks,
                depends_on=[redis, redis_cache, pool],
            ),
            opts=child,
        )
        edge = Edge(
            "edge",
            EdgeArgs(
                names=names,
                edge=config.edge,
                status_port=config.balancer.status_port,
                conf=render_edge_conf(config, gateway.addresses, pool.addresses),
                certificate=certificate,
                networks=networks,
                depends_on=[gateway, pool],
            ),
            opts=child,
        )
        monitoring = Monitoring(
            "monitoring",
            MonitoringArgs(
                names=names,
                monitoring=config.monitoring,
                uses_gpus=config.ollama.uses_gpus,
                nginx_status_port=config.balancer.status_port,
                prometheus_command=prometheus_command(config),
                prometheus_files=prometheus_uploads(config, gateway.addresses),
                grafana_files=grafana_uploads(config) if config.monitoring.grafana.enabled else {},
                grafana_url=grafana_url(config),
                grafana_admin_password=credentials.grafana_admin_password,
                networks=networks,
                volumes=volumes,
            ),
            opts=child,
        )
        self.outputs = self._outputs(
            config,
            networks,
            volumes,
            credentials,
            pool,
            (redis, redis_cache),
            gateway,
            edge,
            monitoring,
        )
        self.register_outputs({k: v for k, v in self.outputs.items() if k not in SECRET_OUTPUTS})

    @staticmethod
    def _outputs(
        config: StackConfig,
        networks: StackNetworks,
        volumes: StackVolumes,
        credentials: StackCredentials,
        pool: OllamaPool,
        redis: tuple[RedisCache, RedisCache],
        gateway: GatewayService,
        edge: Edge,
        monitoring: Monitoring,
    ) -> dict[str, Any]:
        containers: dict[str, list[pulumi.Output[str]]] = {
            "ollama": [i.name for i in pool.instances],
            "model-puller": [pool.puller.name],
            "redis": [redis[0].container.name],
            "redis-cache": [redis[1].container.name],
            "gateway": [r.name for r in gateway.replicas],
            "nginx": [edge.container.name],
            "prometheus": [monitoring.prometheus.name],
            "nginx-exporter": [monitoring.nginx_exporter.name],
        }
        if monitoring.grafana is not None:
            containers["grafana"] = [monitoring.grafana.name]
        if monitoring.gpu_exporter is not None:
            containers["gpu-exporter"] = [monitoring.gpu_exporter.name]
        volume_names: dict[str, pulumi.Output[str]] = {
            "models": volumes.models.name,
            "redisData": volumes.redis.name,
            "redisCacheData": volumes.redis_cache.name,
            "prometheusData": volumes.prometheus.name,
        }
        if volumes.grafana is not None:
            volume_names["grafanaData"] = volumes.grafana.name

        outputs: dict[str, Any] = {
            "environment": config.environment,
            "namePrefix": config.name_prefix,
            "gatewayUrl": config.edge.url,
            "grafanaUrl": grafana_url(config),
            "containers": containers,
            "networks": {
                "internal": networks.internal.name,
                "edge": networks.edge.name,
                "egress": networks.egress.name,
            },
            "volumes": volume_names,
            "edgePorts": edge.published_ports + monitoring_ports(config),
            "models": list(config.ollama.models),
        }
        # Generated credentials the user needs, as secret outputs
        # (`pulumi stack output devApiKey --show-secrets`).
        if credentials.dev_api_key is not None:
            outputs["devApiKey"] = credentials.dev_api_key
        if credentials.grafana_password_generated and monitoring.grafana is not None:
            outputs["grafanaAdminPassword"] = credentials.grafana_admin_password
        return outputs


def monitoring_ports(config: StackConfig) -> list[dict[str, Any]]:
    grafana = config.monitoring.grafana
    if not grafana.enabled:
        return []
    return [
        {
            "name": "grafana",
            "role": "grafana",
            "address": grafana.bind_address,
            "port": grafana.port,
            "containerPort": 3000,
        }
    ]
