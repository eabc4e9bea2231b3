"""Names, labels and in-cluster addresses of one stack's Kubernetes objects.

Pure data (no Pulumi): the components, the policy rules and the tests all derive names
from here. Every object is named after the stack's prefix, so two stacks can share a
namespace; the pod labels (`app.kubernetes.io/*`) are what Services, NetworkPolicies,
PodDisruptionBudgets and the policy pack select on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from llm_config.model import StackConfig

from llm_stack.shared import labels as roles
from llm_stack.shared.names import OLLAMA_PORT, REDIS_PORT, StackNames

PART_OF_LABEL: Final = "app.kubernetes.io/part-of"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
NAME_LABEL: Final = "app.kubernetes.io/name"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
PART_OF: Final = "llm-stack"

# Roles of pods beyond the Docker ones: on a cluster the edge and the balancer are two
# Deployments of the same nginx config (the Docker stack runs one container for both).
EDGE: Final = "edge"
BALANCER: Final = "balancer"
OLLAMA: Final = roles.OLLAMA
MODEL_PULLER: Final = roles.MODEL_PULLER
REDIS: Final = roles.REDIS
REDIS_CACHE: Final = roles.REDIS_CACHE
GATEWAY: Final = roles.GATEWAY
PROMETHEUS: Final = roles.PROMETHEUS

# kube-prometheus-stack's Grafana sidecar loads ConfigMaps carrying this label.
GRAFANA_DASHBOARD_LABEL: Final = "grafana_dashboard"
# ServiceMonitors take the Prometheus job name from this Service label, so the jobs are
# named as in prometheus.yml and the same rules and dashboards apply.
JOB_LABEL: Final = "llm-stack/job"

OLLAMA_SERVICE_PORT: Final = OLLAMA_PORT
REDIS_SERVICE_PORT: Final = REDIS_PORT
NGINX_EXPORTER_PORT: Final = 9113


@dataclass(frozen=True)
class KubeNames:
    """Object names and DNS names of one stack in its namespace."""

    prefix: str
    namespace: str
    cluster_domain: str

    @classmethod
    def of(cls, config: StackConfig) -> KubeNames:
        kube = config.kubernetes
        if kube is None:
            raise ValueError("KubeNames: the stack config has no kubernetes section")
        return cls(
            prefix=StackNames.of(config).prefix,
            namespace=kube.namespace or config.name_prefix,
            cluster_domain=kube.cluster_domain,
        )

    def object(self, role: str, suffix: str = "") -> str:
        return f"{self.prefix}-{role}" + (f"-{suffix}" if suffix else "")

    def fqdn(self, service: str) -> str:
        """A Service's DNS name, fully qualified (nginx's resolver uses no search list)."""
        return f"{service}.{self.namespace}.svc.{self.cluster_domain}"

    @property
    def ollama(self) -> str:
        """The StatefulSet and its headless Service (pods: <ollama>-0, -1, ...)."""
        return self.object(OLLAMA)

    def ollama_pod_host(self, index: int) -> str:
        """The stable DNS name of one Ollama pod (listed while the pod is ready)."""
        return f"{self.ollama}-{index}.{self.fqdn(self.ollama)}"

    def ollama_url(self, index: int) -> str:
        return f"http://{self.ollama_pod_host(index)}:{OLLAMA_SERVICE_PORT}"

    @property
    def gateway(self) -> str:
        return self.object(GATEWAY)

    @property
    def redis(self) -> str:
        """The state Redis: limits, quotas, usage, routing state (never evicts)."""
        return self.object(REDIS)

    @property
    def redis_cache(self) -> str:
        """The response cache's Redis."""
        return self.object(REDIS_CACHE)

    @property
    def edge(self) -> str:
        return self.object(EDGE)

    @property
    def balancer(self) -> str:
        return self.object(BALANCER)

    @property
    def prometheus(self) -> str:
        return self.object(PROMETHEUS)

    def selector(self, role: str) -> dict[str, str]:
        """The labels that select one role's pods of this stack."""
        return {INSTANCE_LABEL: self.prefix, COMPONENT_LABEL: role}

    def labels(self, role: str) -> dict[str, str]:
        """Every label of one role's objects and pods."""
        return {
            **self.selector(role),
            NAME_LABEL: role,
            PART_OF_LABEL: PART_OF,
            MANAGED_BY_LABEL: "pulumi",
        }
