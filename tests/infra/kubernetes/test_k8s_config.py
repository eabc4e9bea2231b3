"""The platform key and the kubernetes section: defaults, and combinations refused
before any resource exists, each naming what to fix."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from llm_config import ConfigError, StackConfig

from tests.infra.kubernetes.stacks import k8s_values
from tests.infra.stack_run import StackMocks, run_stack, stack_values


def _refused(values: dict[str, Any]) -> str:
    mocks = StackMocks()
    with pytest.raises(ConfigError) as raised:
        run_stack("k8s", values, mocks=mocks)
    assert mocks.created == [], "a resource was declared before the config was checked"
    return str(raised.value)


def _kube(**changes: Any) -> dict[str, Any]:
    values = k8s_values()
    kube = copy.deepcopy(values["kubernetes"])
    for key, value in changes.items():
        if value is None:
            kube.pop(key, None)
        else:
            kube[key] = value
    values["kubernetes"] = kube
    return values


def test_docker_stays_the_default() -> None:
    config = StackConfig.model_validate({"ollama": {"models": ["llama3.2:1b"]}})
    assert config.platform == "docker"
    assert config.kubernetes is None


def test_the_example_stack_file_parses() -> None:
    config = StackConfig.model_validate(
        {k: v for k, v in stack_values("k8s").items() if k not in ("apiKeys", "redisPassword")}
    )
    assert config.platform == "kubernetes"
    assert config.kubernetes is not None
    assert config.kubernetes.gpu.resource == "nvidia.com/gpu"
    assert config.kubernetes.namespace == "llm"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {k: v for k, v in k8s_values().items() if k != "kubernetes"},
            "needs a `kubernetes` section",
        ),
        (
            k8s_values(ollama={"gpus": ["0", "1", "2"]}),
            "ollama.gpus: on Kubernetes the device plugin picks each pod's GPU",
        ),
        (
            _kube(certManager=None),
            "edge.tls: cert-manager needs kubernetes.certManager.issuerName",
        ),
        (
            k8s_values(edge={"tls": "provided"}),
            "kubernetes.certManager: only used with edge.tls: cert-manager",
        ),
        (
            _kube(expose={"type": "http-route"}),
            "type http-route needs gateway.name",
        ),
        (
            _kube(expose={"type": "load-balancer", "gateway": {"name": "public"}}),
            "gateway is only used with type http-route",
        ),
        (
            _kube(autoscaling={"maxReplicas": 1}),
            "maxReplicas (1) is below gateway.replicas (2)",
        ),
        (
            _kube(autoscaling={"maxReplicas": 4, "keda": {"queueDepthPerReplica": 8}}),
            "keda.prometheusUrl: needed with prometheusOperator",
        ),
        (
            _kube(expose={**k8s_values()["kubernetes"]["expose"], "routeTimeoutSeconds": 600}),
            "routeTimeoutSeconds (600) is below gateway.timeouts.totalSeconds (1200)",
        ),
        (
            _kube(expose={"type": "load-balancer", "routeTimeoutSeconds": 1300}),
            "routeTimeoutSeconds: only used with type http-route",
        ),
        (
            k8s_values(gateway={"shutdownGraceSeconds": 60}),
            "gateway.shutdownGraceSeconds (60) is below the longest generation (1200 s",
        ),
        (
            _kube(models={"digests": {"qwen2.5:7b": "a" * 64}}),
            "kubernetes.models.digests: qwen2.5:7b not in ollama.models",
        ),
        (_kube(models={"digests": {"llama3.1:8b": "abc"}}), "is not a sha256 digest"),
        (
            _kube(models={"warm": ["qwen2.5:7b"]}),
            "kubernetes.models.warm: qwen2.5:7b not in ollama.models",
        ),
        (_kube(dns={"ports": [0]}), "dns.ports: 0 is not a port"),
        (_kube(dns={"cidrs": ["node-local"]}), "'node-local' is not a CIDR"),
        (_kube(edgeGatewayTries=1), "llm-stack:kubernetes.edgeGatewayTries"),
        (_kube(gpu={"runtimeClassName": "NVIDIA"}), "'NVIDIA' is not a Kubernetes name"),
        (
            _kube(certManager={"issuerName": "le", "challenge": "tls-alpn-01"}),
            "llm-stack:kubernetes.certManager.challenge",
        ),
        (
            k8s_values(monitoring={"grafana": {"enabled": True}}),
            "the Kubernetes platform deploys no Grafana",
        ),
        (
            k8s_values(balancer={"port": 8443}),
            "balancer.port: 8443 is an edge container port",
        ),
        (
            _kube(gatewayImage="registry.example.com/llm-stack/gateway:latest"),
            "llm-stack:kubernetes.gatewayImage: 'registry.example.com/llm-stack/gateway:latest' "
            "uses 'latest'",
        ),
        (_kube(gatewayImage=None), "llm-stack:kubernetes.gatewayImage: Field required"),
        (_kube(dnsResolver="kube-dns"), "'kube-dns' is not an IP address"),
        (_kube(namespace="LLM_Prod"), "'LLM_Prod' is not a Kubernetes name"),
        (_kube(models={"size": "lots"}), "'lots' is not a storage size"),
        (
            _kube(gpu={"tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]}),
            "operator Exists takes no value",
        ),
        (_kube(gpu={"resource": "gpu"}), "llm-stack:kubernetes.gpu.resource"),
        (_kube(expose={"sourceRanges": ["everyone"]}), "'everyone' is not a CIDR"),
        (_kube(nodeSelectr={}), "llm-stack:kubernetes.nodeSelectr: Extra inputs are not permitted"),
        (
            k8s_values(environment="prod", edge={"tls": "self-signed"}),
            "prod serves a provided certificate",
        ),
    ],
)
def test_invalid_combinations_are_refused_before_any_resource(
    values: dict[str, Any], expected: str
) -> None:
    assert expected in _refused(values)


def test_a_kubernetes_section_on_docker_is_refused() -> None:
    values = copy.deepcopy(stack_values("dev"))
    values["kubernetes"] = k8s_values()["kubernetes"]
    assert "kubernetes: only read with platform: kubernetes" in _refused(values)


def test_cert_manager_needs_kubernetes() -> None:
    values = copy.deepcopy(stack_values("dev"))
    values["edge"] = {**values["edge"], "tls": "cert-manager"}
    assert "edge.tls: cert-manager needs platform: kubernetes" in _refused(values)


def test_prod_on_kubernetes_still_needs_its_secrets() -> None:
    values = k8s_values()
    values.pop("redisPassword")
    message = _refused(values)
    assert "llm-stack:redisPassword: missing" in message
    assert "pulumi config set --secret redisPassword" in message
