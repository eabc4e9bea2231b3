"""The whole stack on a cluster, as one component: what `run()` declares for
`platform: kubernetes`.
"""

from __future__ import annotations

from typing import Any

import pulumi
from llm_config.model import StackConfig

from llm_stack.kubernetes import drain
from llm_stack.kubernetes import names as n
from llm_stack.kubernetes.edge import EdgeNginx
from llm_stack.kubernetes.gateway import GatewayDeployment
from llm_stack.kubernetes.monitoring import KubernetesMonitoring
from llm_stack.kubernetes.namespace import StackNamespace
from llm_stack.kubernetes.network_policies import NetworkPolicies
from llm_stack.kubernetes.ollama import OllamaStatefulSet
from llm_stack.kubernetes.redis import RedisStatefulSet
from llm_stack.pulumi_config import StackSecrets
from llm_stack.shared.secrets import StackCredentials, secret_text

COMPONENT_TYPE = "llm-stack:kubernetes:Stack"
SECRET_OUTPUTS = ("devApiKey",)


class KubernetesStack(pulumi.ComponentResource):
    """Namespace, policies, credentials and every service of one stack on a cluster."""

    outputs: dict[str, Any]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        secrets: StackSecrets,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        names = n.KubeNames.of(config)
        child = pulumi.ResourceOptions(parent=self)
        namespace = StackNamespace("namespace", config, opts=child).name
        NetworkPolicies("network-policies", config, namespace=namespace, opts=child)
        credentials = StackCredentials("credentials", config, secrets, opts=child)
        keys_file = credentials.api_keys_file
        drain_secret: pulumi.Output[str] | None = None
        if drain.enabled(config):
            drain_key = drain.DrainKey("drain-key", config, namespace=namespace, opts=child)
            keys_file = secret_text(
                pulumi.Output.all(keys_file, drain_key.key).apply(
                    lambda parts: drain.with_drain_key(parts[0], parts[1])
                )
            )
            drain_secret = drain_key.secret.metadata.name
        ollama = OllamaStatefulSet(
            "ollama", config, namespace=namespace, drain_key_secret=drain_secret, opts=child
        )
        redis = RedisStatefulSet(
            "redis", config, namespace=namespace, password=credentials.redis_password, opts=child
        )
        redis_cache = RedisStatefulSet(
            "redis-cache",
            config,
            namespace=namespace,
            password=credentials.redis_password,
            role="cache",
            opts=child,
        )
        GatewayDeployment(
            "gateway",
            config,
            namespace=namespace,
            redis_url=redis.url,
            cache_redis_url=redis_cache.url,
            keys_file=keys_file,
            instance_urls=ollama.urls,
            otel_headers=secrets.otel_headers,
            # Created once Ollama is ready: a first deploy waits for GPU nodes and
            # pulls there (1 h), not within the gateway's own timeout.
            after=[ollama.statefulset],
            opts=child,
        )
        edge = EdgeNginx("edge", config, namespace=namespace, secrets=secrets, opts=child)
        KubernetesMonitoring("monitoring", config, namespace=namespace, opts=child)

        workloads: dict[str, str] = {
            "ollama": names.ollama,
            "redis": names.redis,
            "redis-cache": names.redis_cache,
            "gateway": names.gateway,
            "edge": names.edge,
        }
        if edge.balancer is not None:
            workloads["balancer"] = names.balancer
        if config.kubernetes is not None and config.kubernetes.prometheus_operator is None:
            workloads["prometheus"] = names.prometheus
        self.outputs = {
            "environment": config.environment,
            "namePrefix": config.name_prefix,
            "platform": config.platform,
            "namespace": namespace,
            "gatewayUrl": config.edge.url,
            "workloads": workloads,
            "ollamaInstances": ollama.urls,
            "models": list(config.ollama.models),
        }
        if credentials.dev_api_key is not None:
            self.outputs["devApiKey"] = credentials.dev_api_key
        self.register_outputs({k: v for k, v in self.outputs.items() if k not in SECRET_OUTPUTS})
