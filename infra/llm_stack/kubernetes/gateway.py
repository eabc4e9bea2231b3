"""The gateway on a cluster: a Deployment with the Docker replicas' environment contract.

Its environment is `gateway_environment`'s, as on Docker: plain values inline, the
credential-carrying ones (`SECRET_VARIABLES`: the Redis URL holds the password) from a
Secret by `secretKeyRef`, and the keys file mounted from the same Secret. A headless
Service lets nginx and Prometheus see every pod. Replicas are the autoscaler's: a
HorizontalPodAutoscaler on CPU, or, where KEDA is installed, a ScaledObject on CPU and
the gateway's queue depth if asked (KEDA then owns the HPA; two would fight over the
replicas). Either scales down only after a stabilization window, since every
scale-down is a pod that must finish its streams.

Readiness is the gateway's own (`/health`), not Ollama's (`/ready`): with every Ollama
pod down a gateway still serves cache hits and answers 503 with Retry-After, where an
unready one would leave nginx with nothing but its own 502. The Deployment is created
after the Ollama StatefulSet is ready, so a first `pulumi up` does not wait for GPU
nodes and model pulls inside the gateway's own timeout.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from llm_config.model import StackConfig
from llm_monitoring.jobs import GATEWAY_JOB, selector

from llm_stack.gateway_env import SECRET_VARIABLES, gateway_environment
from llm_stack.kubernetes import names as n
from llm_stack.kubernetes import shutdown
from llm_stack.kubernetes import workload as w
from llm_stack.shared.names import KEYS_FILE, PROMETHEUS_PORT
from llm_stack.shared.secrets import secret_text

KEYS_DIR = KEYS_FILE.rsplit("/", 1)[0]
KEYS_KEY = KEYS_FILE.rsplit("/", 1)[1]
# The queue-depth gauge of the gateway (labels model, priority): scaled on its sum.
QUEUE_DEPTH_METRIC = "llm_queue_depth"


def upstream_url(config: StackConfig, names: n.KubeNames) -> str:
    """least-conn: the balancer Service; model-aware: any ready Ollama pod (the headless
    Service), which the gateway reads model lists from."""
    if config.gateway.routing == "least-conn":
        return f"http://{names.fqdn(names.balancer)}:{config.balancer.port}"
    return f"http://{names.fqdn(names.ollama)}:{n.OLLAMA_SERVICE_PORT}"


# Stand-ins for the secrets when only the variables' names and plain values matter.
_PLACEHOLDER_REDIS = "redis://placeholder:6379/0"
_PLACEHOLDER_HEADERS = "placeholder"


def environment(
    config: StackConfig,
    instance_urls: list[str],
    redis_url: str,
    cache_redis_url: str,
    otel_headers: str | None = None,
) -> dict[str, str]:
    """The gateway's variables, with these secrets (plain; the caller keeps them secret)."""
    names = n.KubeNames.of(config)
    env = gateway_environment(
        config,
        upstream_url=upstream_url(config, names),
        redis_url=redis_url,
        cache_redis_url=cache_redis_url,
        instance_urls=instance_urls if config.gateway.routing == "model-aware" else (),
        api_keys_file=KEYS_FILE,
        otel_headers=otel_headers,
    )
    if config.kubernetes is not None and config.kubernetes.ipv6:
        # `::` takes IPv4 too on Linux (a dual-stack socket).
        env["GATEWAY_HOST"] = "::"
    return env


def env_entries(
    config: StackConfig, instance_urls: list[str], secret_name: Any, with_headers: bool = False
) -> list[Any]:
    """Container env: plain values inline, secret ones by reference into the Secret."""
    headers = _PLACEHOLDER_HEADERS if with_headers else None
    plain = environment(config, instance_urls, _PLACEHOLDER_REDIS, _PLACEHOLDER_REDIS, headers)
    entries: list[Any] = []
    for key in sorted(plain):
        if key in SECRET_VARIABLES:
            entries.append(
                {"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}
            )
        else:
            entries.append({"name": key, "value": plain[key]})
    return entries


def queue_depth_query(config: StackConfig) -> str:
    stack = f'service="{config.name_prefix}"'
    return f"sum({QUEUE_DEPTH_METRIC}{selector(GATEWAY_JOB, stack)})"


class GatewayDeployment(pulumi.ComponentResource):
    secret: k8s.core.v1.Secret
    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    autoscaler: k8s.autoscaling.v2.HorizontalPodAutoscaler | None
    scaled_object: k8s.apiextensions.CustomResource | None

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        namespace: pulumi.Input[str],
        redis_url: pulumi.Output[str],
        cache_redis_url: pulumi.Output[str],
        keys_file: pulumi.Output[str],
        instance_urls: list[str],
        otel_headers: pulumi.Output[str] | None = None,
        after: list[pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("llm-stack:kubernetes:Gateway", name, None, opts)
        kube = config.kubernetes
        assert kube is not None
        names = n.KubeNames.of(config)
        gateway = config.gateway
        child = pulumi.ResourceOptions(parent=self)
        labels = names.labels(n.GATEWAY)
        pod_selector = names.selector(n.GATEWAY)

        secrets: list[pulumi.Input[str | None]] = [redis_url, cache_redis_url, otel_headers]
        full = pulumi.Output.all(*secrets).apply(
            lambda values: environment(config, instance_urls, values[0], values[1], values[2])
        )
        headers = _PLACEHOLDER_HEADERS if otel_headers is not None else None
        plain = environment(config, instance_urls, _PLACEHOLDER_REDIS, _PLACEHOLDER_REDIS, headers)
        secret_names = sorted(SECRET_VARIABLES & set(plain))

        def secret_value(key: str) -> pulumi.Output[str]:
            return secret_text(full.apply(lambda env: env[key]))

        secret_data: dict[str, Any] = {key: secret_value(key) for key in secret_names}
        secret_data[KEYS_KEY] = secret_text(keys_file)
        secret_name = names.object(n.GATEWAY, "secrets")
        self.secret = k8s.core.v1.Secret(
            "gateway-secrets",
            metadata=w.metadata(names, n.GATEWAY, secret_name, namespace),
            type="Opaque",
            string_data=secret_data,
            opts=child,
        )
        self.service = k8s.core.v1.Service(
            "gateway",
            metadata=w.metadata(
                names,
                n.GATEWAY,
                names.gateway,
                namespace,
                labels={**labels, n.JOB_LABEL: GATEWAY_JOB},
            ),
            spec={
                # Headless: nginx (least_conn over every pod) and Prometheus (each pod
                # scraped on its own) resolve the pods, not a virtual IP.
                "clusterIP": "None",
                "selector": pod_selector,
                "ports": [{"name": "http", "port": gateway.port, "targetPort": "http"}],
            },
            opts=child,
        )
        container = {
            "name": n.GATEWAY,
            "image": kube.gateway_image,
            "env": env_entries(
                config, instance_urls, self.secret.metadata.name, otel_headers is not None
            ),
            "ports": [{"name": "http", "containerPort": gateway.port}],
            "resources": w.role_resources(config, n.GATEWAY),
            "startupProbe": w.startup_probe("/health", "http", 60),
            "livenessProbe": w.http_probe("/health", "http", period_seconds=15),
            # The process answers: it serves hits and 503 + Retry-After without Ollama.
            "readinessProbe": w.http_probe("/health", "http", period_seconds=5),
            # Keeps accepting until every nginx re-resolved the Service name without
            # this pod; then uvicorn stops accepting and drains (shutdownGraceSeconds).
            "lifecycle": {
                "preStop": {"exec": {"command": ["sleep", str(shutdown.GATEWAY_PRE_STOP_SECONDS)]}}
            },
            "volumeMounts": [
                {"name": "keys", "mountPath": KEYS_DIR, "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir)
            ],
        }
        pod = w.pod_spec(
            w.USERS[n.GATEWAY],
            [container],
            volumes=[
                {
                    "name": "keys",
                    "secret": {
                        "secretName": self.secret.metadata.name,
                        "items": [{"key": KEYS_KEY, "path": KEYS_KEY}],
                        "defaultMode": 0o440,
                    },
                },
                w.empty_dir("tmp"),
            ],
            termination_grace_seconds=shutdown.gateway_grace_seconds(config),
            extra=w.spread(pod_selector),
        )
        # A changed key list or Redis password rolls the pods (env and files are read
        # at start).
        config_hash = secret_text(
            pulumi.Output.all(full, keys_file).apply(
                lambda parts: w.text_hash([repr(sorted(parts[0].items())), parts[1]])
            )
        )
        self.deployment = k8s.apps.v1.Deployment(
            "gateway",
            metadata=w.metadata(names, n.GATEWAY, names.gateway, namespace),
            spec={
                # No `replicas`: the autoscaler owns the count (a fixed value here would
                # reset it on every `pulumi up`). The Deployment starts with one pod and
                # the autoscaler raises it to gateway.replicas (its minimum) at once.
                "selector": {"matchLabels": pod_selector},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                },
                "template": w.pod_template(labels, pod, config_hash=config_hash),
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.service, *(after or [])],
                # A rollout waits for new pods while old ones finish their streams.
                custom_timeouts=pulumi.CustomTimeouts(create="20m", update="30m"),
            ),
        )
        k8s.policy.v1.PodDisruptionBudget(
            "gateway-pdb",
            metadata=w.metadata(names, n.GATEWAY, names.gateway, namespace),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": pod_selector}},
            opts=child,
        )
        scaling = kube.autoscaling
        self.autoscaler = None
        self.scaled_object = None
        # What the HPA or KEDA scales: this Deployment.
        target = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": self.deployment.metadata.name,
        }
        behavior = {
            "scaleDown": {
                "stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds,
                # One pod at a time: each one leaving finishes its streams first.
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
            }
        }
        if scaling.keda is None:
            self.autoscaler = k8s.autoscaling.v2.HorizontalPodAutoscaler(
                "gateway-hpa",
                metadata=w.metadata(names, n.GATEWAY, names.gateway, namespace),
                spec={
                    "scaleTargetRef": target,
                    "minReplicas": gateway.replicas,
                    "maxReplicas": scaling.max_replicas,
                    "behavior": behavior,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {
                                    "type": "Utilization",
                                    "averageUtilization": scaling.target_cpu_percent,
                                },
                            },
                        }
                    ],
                },
                opts=child,
            )
        else:
            keda = scaling.keda
            server = keda.prometheus_url or (
                f"http://{names.fqdn(names.prometheus)}:{PROMETHEUS_PORT}"
            )
            triggers: list[dict[str, Any]] = [
                {
                    "type": "cpu",
                    "metricType": "Utilization",
                    "metadata": {"value": str(scaling.target_cpu_percent)},
                }
            ]
            if keda.queue_depth_per_replica is not None:
                triggers.append(
                    {
                        "type": "prometheus",
                        "metadata": {
                            "serverAddress": server,
                            "query": queue_depth_query(config),
                            "threshold": str(keda.queue_depth_per_replica),
                        },
                    }
                )
            self.scaled_object = k8s.apiextensions.CustomResource(
                "gateway-scaledobject",
                api_version="keda.sh/v1alpha1",
                kind="ScaledObject",
                metadata=w.metadata(names, n.GATEWAY, names.gateway, namespace),
                spec={
                    "scaleTargetRef": target,
                    "minReplicaCount": gateway.replicas,
                    "maxReplicaCount": scaling.max_replicas,
                    "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}},
                    "triggers": triggers,
                },
                opts=child,
            )
        self.register_outputs({"deployment": self.deployment.metadata.name})
