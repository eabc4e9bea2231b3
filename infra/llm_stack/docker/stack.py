"""The whole Docker stack as one component: networks, volumes, credentials, services."""

from __future__ import annotations

from typing import Any

import pulumi
from llm_config.model import StackConfig

from llm_stack.docker.edge import Edge
from llm_stack.docker.gateway import GatewayService
from llm_stack.docker.monitoring import Monitoring, grafana_url
from llm_stack.docker.network import StackNetworks
from llm_stack.docker.ollama import OllamaPool
from llm_stack.docker.redis import RedisCache
from llm_stack.docker.volumes import StackVolumes
from llm_stack.pulumi_config import StackSecrets
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
        networks = StackNetworks("networks", config, opts=child)
        volumes = StackVolumes("volumes", config, opts=child)
        credentials = StackCredentials("credentials", config, secrets, opts=child)
        certificate = EdgeCertificate("edge-certificate", config, secrets, opts=child)
        pool = OllamaPool("ollama", config, networks=networks, volumes=volumes, opts=child)
        redis = RedisCache(
            "redis",
            config,
            password=credentials.redis_password,
            networks=networks,
            volumes=volumes,
            opts=child,
        )
        gateway = GatewayService(
            "gateway",
            config,
            redis_url=redis.url,
            keys_file=credentials.api_keys_file,
            ollama_addresses=pool.addresses,
            otel_headers=secrets.otel_headers,
            networks=networks,
            depends_on=[redis, pool],
            opts=child,
        )
        edge = Edge(
            "edge",
            config,
            networks=networks,
            certificate=certificate,
            gateway_addresses=gateway.addresses,
            ollama_addresses=pool.addresses,
            # Start nginx once its upstreams exist, so the first requests find them.
            depends_on=[gateway, pool],
            opts=child,
        )
        monitoring = Monitoring(
            "monitoring",
            config,
            networks=networks,
            volumes=volumes,
            gateway_addresses=gateway.addresses,
            grafana_admin_password=credentials.grafana_admin_password,
            opts=child,
        )

        containers: dict[str, list[pulumi.Output[str]]] = {
            "ollama": [i.name for i in pool.instances],
            "model-puller": [pool.puller.name],
            "redis": [redis.container.name],
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
            "prometheusData": volumes.prometheus.name,
        }
        if volumes.grafana is not None:
            volume_names["grafanaData"] = volumes.grafana.name

        self.outputs = {
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
            self.outputs["devApiKey"] = credentials.dev_api_key
        if credentials.grafana_password_generated and monitoring.grafana is not None:
            self.outputs["grafanaAdminPassword"] = credentials.grafana_admin_password
        self.register_outputs({k: v for k, v in self.outputs.items() if k not in SECRET_OUTPUTS})


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
