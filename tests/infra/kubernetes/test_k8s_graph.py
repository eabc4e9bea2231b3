"""The resource graph of the real program on the Kubernetes platform.

Pulumi.k8s.yaml (and two variants for the branches it does not take, see stacks.py)
run under Pulumi mocks; these tests assert the issue's invariants on what the program
declared: GPUs, probes, hardening, the gateway's environment contract, the network
policies, secrets kept out of ConfigMaps.
"""

from __future__ import annotations

from typing import Any

import pytest
from llm_config import StackConfig
from llm_stack.kubernetes.names import KubeNames
from llm_stack.kubernetes.pull import PULL_SCRIPT
from llm_stack.kubernetes.workload import CONFIG_HASH_ANNOTATION
from llm_stack.shared.names import StackNames
from pulumi.runtime.rpc import is_rpc_secret

from tests.infra.kubernetes.conftest import config_of
from tests.infra.kubernetes.manifests import (
    containers,
    env_of,
    kube_resources,
    manifests,
    named,
    of_kind,
    pod_specs,
)
from tests.infra.kubernetes.stacks import K8S_SECRETS, alt_values, k8s_values, run_k8s
from tests.infra.stack_run import StackRun, plain_strings, unwrap

# --- shape ---------------------------------------------------------------------------


def test_the_example_stack_is_kubernetes_and_declares_no_docker(k8s_run: StackRun) -> None:
    assert k8s_run.outputs["platform"] == "kubernetes"
    assert not [r for r in k8s_run.resources if r.type.startswith("docker")]
    (top,) = [r for r in k8s_run.resources if r.type == "llm-stack:kubernetes:Stack"]
    assert top.parent_type == "pulumi:pulumi:Stack"


def test_every_object_is_in_the_stack_namespace_with_its_labels(
    each_k8s: tuple[StackRun, StackConfig],
) -> None:
    run, config = each_k8s
    names = KubeNames.of(config)
    for m in manifests(run):
        if m["kind"] == "Namespace":
            assert m["metadata"]["name"] == names.namespace
            assert m["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
            continue
        assert m["metadata"]["namespace"] == names.namespace, m["metadata"]["name"]
        assert m["metadata"]["name"].startswith(names.prefix + "-")
        assert m["metadata"]["labels"]["app.kubernetes.io/instance"] == names.prefix
    (namespace,) = [r for r in manifests(run) if r["kind"] == "Namespace"] or [None]
    assert (namespace is not None) == config.kubernetes.create_namespace  # type: ignore[union-attr]


def test_workloads_follow_the_config(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, config = each_k8s
    names = KubeNames.of(config)
    kinds = {(m["kind"], m["metadata"]["name"]) for m in manifests(run)}
    assert ("StatefulSet", names.ollama) in kinds
    assert ("StatefulSet", names.redis) in kinds
    assert ("StatefulSet", names.redis_cache) in kinds
    assert ("Deployment", names.gateway) in kinds
    assert ("Deployment", names.edge) in kinds
    least_conn = config.gateway.routing == "least-conn"
    assert (("Deployment", names.balancer) in kinds) == least_conn
    own_prometheus = config.kubernetes.prometheus_operator is None  # type: ignore[union-attr]
    assert (("StatefulSet", names.prometheus) in kinds) == own_prometheus
    ollama = named(run, "StatefulSet", names.ollama)
    assert ollama["spec"]["replicas"] == config.ollama.instances
    assert ollama["spec"]["serviceName"] == names.ollama
    assert named(run, "Deployment", names.edge)["spec"]["replicas"] == (
        config.kubernetes.edge_replicas  # type: ignore[union-attr]
    )
    # The autoscaler owns the gateway's replica count.
    assert "replicas" not in named(run, "Deployment", names.gateway)["spec"]


# --- Ollama ----------------------------------------------------------------------------


def _ollama_pod(run: StackRun, config: StackConfig) -> dict[str, Any]:
    pod: dict[str, Any] = named(run, "StatefulSet", KubeNames.of(config).ollama)["spec"][
        "template"
    ]["spec"]
    return pod


def _ollama_server(pod: dict[str, Any]) -> dict[str, Any]:
    (server,) = [c for c in pod["containers"] if c["name"] == "ollama"]
    return server


def test_one_gpu_per_ollama_pod_on_gpu_nodes(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    kube = config.kubernetes
    assert kube is not None
    pod = _ollama_pod(k8s_run, config)
    server = _ollama_server(pod)
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert server["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    # The device plugin sets the visible device; the pod must not override it.
    assert "NVIDIA_VISIBLE_DEVICES" not in env_of(server)
    # Only Ollama asks for GPUs.
    for workload, other in pod_specs(k8s_run):
        if workload["kind"] == "StatefulSet" and workload["metadata"]["name"].endswith("ollama"):
            continue
        for container in containers(other):
            limits = container["resources"]["limits"]
            assert not [k for k in limits if "gpu" in k], workload["metadata"]["name"]


def test_cpu_only_pods_see_no_gpu(alt_run: StackRun) -> None:
    config = config_of(alt_values())
    pod = _ollama_pod(alt_run, config)
    for container in containers(pod):
        assert env_of(container)["NVIDIA_VISIBLE_DEVICES"] == "void"
        assert not [k for k in container["resources"]["limits"] if "gpu" in k]
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod


def test_ollama_pods_have_stable_dns_names_and_settings(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    names = KubeNames.of(config)
    headless = named(k8s_run, "Service", names.ollama)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == names.selector("ollama")
    assert k8s_run.outputs["ollamaInstances"] == [
        f"http://llm-k8s-ollama-{i}.llm-k8s-ollama.llm.svc.cluster.local:11434" for i in range(3)
    ]
    server = _ollama_server(_ollama_pod(k8s_run, config))
    env = env_of(server)
    assert env["OLLAMA_HOST"] == "0.0.0.0:11434"
    assert env["OLLAMA_KEEP_ALIVE"] == "24h"
    assert env["OLLAMA_NUM_PARALLEL"] == "4"
    assert env["OLLAMA_MAX_QUEUE"] == "256"
    assert env["OLLAMA_MAX_LOADED_MODELS"] == "2"
    assert env["OLLAMA_CONTEXT_LENGTH"] == "8192"
    assert env["OLLAMA_NOPRUNE"] == "1"
    assert server["resources"]["limits"]["memory"] == "32768Mi"


def test_models_are_pulled_per_pod_before_it_serves(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    statefulset = named(k8s_run, "StatefulSet", KubeNames.of(config).ollama)
    pod = statefulset["spec"]["template"]["spec"]
    (puller,) = pod["initContainers"]
    assert puller["command"] == [
        "/bin/sh",
        "-c",
        PULL_SCRIPT,
        "model-puller",
        "llama3.1:8b",
        "registry.ollama.ai/library/llama3.1/8b",
        "-",
    ]
    assert env_of(puller)["OLLAMA_HOST"] == "127.0.0.1:11434"
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert not of_kind(k8s_run, "Job")


def test_a_shared_claim_is_pulled_once_by_a_job(alt_run: StackRun) -> None:
    config = config_of(alt_values())
    names = KubeNames.of(config)
    (claim,) = of_kind(alt_run, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (job,) = of_kind(alt_run, "Job")
    assert job["metadata"]["name"] == StackNames.of(config).model_puller(config.ollama.models)
    job_pod = job["spec"]["template"]["spec"]
    assert job_pod["restartPolicy"] == "Never"
    assert job_pod["containers"][0]["command"][2] == PULL_SCRIPT
    statefulset = named(alt_run, "StatefulSet", names.ollama)
    assert "initContainers" not in statefulset["spec"]["template"]["spec"]
    assert "volumeClaimTemplates" not in statefulset["spec"]
    volumes = statefulset["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "models",
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
    } in (volumes)


# --- every pod ---------------------------------------------------------------------------


def test_every_workload_is_hardened(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, _ = each_k8s
    seen = 0
    for workload, pod in pod_specs(run):
        what = workload["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, what
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, what
        assert context["runAsUser"] >= 10000, what
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, what
        for container in containers(pod):
            seen += 1
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, what
            assert security["allowPrivilegeEscalation"] is False, what
            assert security["privileged"] is False, what
            assert security["capabilities"] == {"drop": ["ALL"]}, what
            assert security.get("runAsUser", context["runAsUser"]) >= 10000, what
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) >= {"cpu", "memory"}, what
    assert seen >= 6


def test_every_long_running_container_is_probed_over_http_or_tcp(
    each_k8s: tuple[StackRun, StackConfig],
) -> None:
    run, _ = each_k8s
    long_running = [(w, pod) for w, pod in pod_specs(run) if w["kind"] != "Job"]
    assert len(long_running) >= 4  # Ollama, Redis, the gateway, the edge at least
    for workload, pod in long_running:
        for container in pod["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, (workload["metadata"]["name"], container["name"])
                # Ollama's and nginx's images have no curl: no exec probe that needs it.
                assert "curl" not in str(container[probe])


def test_probes_fit_each_service(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    names = KubeNames.of(config)
    ollama = _ollama_server(_ollama_pod(k8s_run, config))
    assert ollama["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    # startPeriodSeconds (300) of model load before liveness counts.
    startup = ollama["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    gateway = named(k8s_run, "Deployment", names.gateway)["spec"]["template"]["spec"]
    (container,) = gateway["containers"]
    # Ready without Ollama: it serves cache hits and 503 + Retry-After meanwhile.
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_pod_templates_roll_when_their_config_changes(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    names = KubeNames.of(config)
    for kind, name in (
        ("Deployment", names.gateway),
        ("Deployment", names.edge),
        ("StatefulSet", names.redis),
    ):
        annotations = named(k8s_run, kind, name)["spec"]["template"]["metadata"]["annotations"]
        assert len(annotations[CONFIG_HASH_ANNOTATION]) == 64


# --- gateway -----------------------------------------------------------------------------


def _gateway_container(run: StackRun, config: StackConfig) -> dict[str, Any]:
    deployment = named(run, "Deployment", KubeNames.of(config).gateway)
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_model_aware_gateway_addresses_each_ollama_pod(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    env = env_of(_gateway_container(k8s_run, config))
    assert env["GATEWAY_ROUTING"] == "model-aware"
    assert env["GATEWAY_OLLAMA_INSTANCES"] == ",".join(k8s_run.outputs["ollamaInstances"])
    assert env["GATEWAY_INSTANCE_VRAM_GB"] == "24"
    assert env["GATEWAY_API_KEYS_FILE"] == "/etc/llm-gateway/keys.json"


def test_least_conn_gateway_goes_through_the_balancer(alt_run: StackRun) -> None:
    config = config_of(alt_values())
    env = env_of(_gateway_container(alt_run, config))
    assert env["GATEWAY_ROUTING"] == "upstream"
    assert env["GATEWAY_UPSTREAM_URL"] == "http://llm-k8s-balancer.llm.svc.cluster.local:8080"
    assert "GATEWAY_OLLAMA_INSTANCES" not in env


def test_gateway_secrets_come_from_a_secret(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, config = each_k8s
    names = KubeNames.of(config)
    container = _gateway_container(run, config)
    env = env_of(container)
    secret_name = names.object("gateway", "secrets")
    assert env["GATEWAY_REDIS_URL"] == {
        "secretKeyRef": {"name": secret_name, "key": "GATEWAY_REDIS_URL"}
    }
    (secret,) = [
        r
        for r in kube_resources(run)
        if r.type == "kubernetes:core/v1:Secret" and r.plain("metadata")["name"] == secret_name
    ]
    # The values are Pulumi secrets all the way into the Secret.
    assert is_rpc_secret(secret.inputs["stringData"])
    data = secret.plain("stringData")
    assert data["GATEWAY_REDIS_URL"].startswith("redis://:")
    assert data["GATEWAY_REDIS_URL"].endswith("@llm-k8s-redis.llm.svc.cluster.local:6379/0")
    assert env["GATEWAY_CACHE_REDIS_URL"] == {
        "secretKeyRef": {"name": secret_name, "key": "GATEWAY_CACHE_REDIS_URL"}
    }
    assert data["GATEWAY_CACHE_REDIS_URL"].endswith(
        "@llm-k8s-redis-cache.llm.svc.cluster.local:6379/0"
    )
    assert set(data) == {"GATEWAY_REDIS_URL", "GATEWAY_CACHE_REDIS_URL", "keys.json"}
    assert "keys" in data["keys.json"]


def test_gateway_scales_on_cpu_with_keda_and_on_queue_depth_only_if_asked(
    k8s_run: StackRun, route_run: StackRun
) -> None:
    (scaled,) = of_kind(k8s_run, "ScaledObject")
    assert not of_kind(k8s_run, "HorizontalPodAutoscaler")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "llm-k8s-gateway"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 8)
    # A queue means busy GPUs; more gateways add none: CPU only unless configured.
    (cpu,) = spec["triggers"]
    assert (cpu["type"], cpu["metadata"]) == ("cpu", {"value": "70"})
    (asked,) = of_kind(route_run, "ScaledObject")
    triggers = {t["type"]: t for t in asked["spec"]["triggers"]}
    prometheus = triggers["prometheus"]["metadata"]
    assert prometheus["query"] == 'sum(llm_queue_depth{job="llm-gateway", service="llm-k8s"})'
    assert prometheus["threshold"] == "4"


def test_keda_asks_our_own_prometheus_when_there_is_one(route_run: StackRun) -> None:
    (scaled,) = of_kind(route_run, "ScaledObject")
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    assert trigger["metadata"]["serverAddress"] == (
        "http://llm-k8s-prometheus.llm.svc.cluster.local:9090"
    )


def test_without_keda_an_hpa_scales_on_cpu(alt_run: StackRun) -> None:
    (hpa,) = of_kind(alt_run, "HorizontalPodAutoscaler")
    assert not of_kind(alt_run, "ScaledObject")
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 3)
    assert spec["metrics"][0]["resource"]["name"] == "cpu"


def test_disruption_budgets(k8s_run: StackRun) -> None:
    budgets = {m["metadata"]["name"]: m["spec"] for m in of_kind(k8s_run, "PodDisruptionBudget")}
    assert set(budgets) == {"llm-k8s-gateway", "llm-k8s-edge", "llm-k8s-ollama"}
    assert all(spec["maxUnavailable"] == 1 for spec in budgets.values())


# --- edge ---------------------------------------------------------------------------------


def test_load_balancer_keeps_client_addresses(alt_run: StackRun) -> None:
    edge = named(alt_run, "Service", "llm-k8s-edge")
    assert edge["spec"]["type"] == "LoadBalancer"
    assert edge["spec"]["externalTrafficPolicy"] == "Local"
    assert edge["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert edge["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb"
    }
    assert {(p["port"], p["targetPort"]) for p in edge["spec"]["ports"]} == {
        (443, "https"),
        (80, "http"),
    }
    # No other Service is reachable from outside the cluster.
    others = [s for s in of_kind(alt_run, "Service") if s["metadata"]["name"] != "llm-k8s-edge"]
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in others)


def test_http_route_attaches_to_the_gateway(k8s_run: StackRun) -> None:
    (route,) = of_kind(k8s_run, "HTTPRoute")
    assert route["spec"]["parentRefs"] == [
        {"name": "public", "namespace": "gateway-system", "sectionName": "https"}
    ]
    assert route["spec"]["hostnames"] == ["llm.example.com"]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "llm-k8s-edge", "port": 443}]
    assert named(k8s_run, "Service", "llm-k8s-edge")["spec"].get("type") is None
    (policy,) = of_kind(k8s_run, "BackendTLSPolicy")
    assert policy["spec"]["validation"] == {
        "hostname": "llm.example.com",
        "wellKnownCACertificates": "System",
    }


def test_a_self_signed_edge_is_verified_against_its_own_certificate(route_run: StackRun) -> None:
    (policy,) = of_kind(route_run, "BackendTLSPolicy")
    (ref,) = policy["spec"]["validation"]["caCertificateRefs"]
    ca = named(route_run, "ConfigMap", ref["name"])
    (tls,) = [s for s in of_kind(route_run, "Secret") if s["type"] == "kubernetes.io/tls"]
    assert ca["data"]["ca.crt"] == tls["stringData"]["tls.crt"]


def test_certificate_comes_from_cert_manager(k8s_run: StackRun) -> None:
    (certificate,) = of_kind(k8s_run, "Certificate")
    spec = certificate["spec"]
    assert spec["dnsNames"] == ["llm.example.com"]
    assert spec["issuerRef"] == {
        "name": "letsencrypt-prod",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert not [s for s in of_kind(k8s_run, "Secret") if s["type"] == "kubernetes.io/tls"]
    edge = named(k8s_run, "Deployment", "llm-k8s-edge")["spec"]["template"]["spec"]
    (tls,) = [v for v in edge["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == spec["secretName"]


def test_tls_key_is_a_secret(alt_run: StackRun) -> None:
    (secret,) = [
        r
        for r in kube_resources(alt_run)
        if r.type == "kubernetes:core/v1:Secret" and r.plain("type") == "kubernetes.io/tls"
    ]
    assert is_rpc_secret(secret.inputs["stringData"])


# --- network policies --------------------------------------------------------------------


def _policies(run: StackRun) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["name"].removeprefix("llm-k8s-netpol-"): m["spec"]
        for m in of_kind(run, "NetworkPolicy")
    }


def _sources(spec: dict[str, Any]) -> list[Any]:
    return [peer for rule in spec.get("ingress", []) for peer in rule.get("from", [None])]


def _component(peer: dict[str, Any]) -> str | None:
    return peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")


def test_default_deny_in_the_namespace(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, _ = each_k8s
    deny = _policies(run)["default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_ollama_is_reachable_only_from_the_gateway_or_the_balancer(
    k8s_run: StackRun, alt_run: StackRun
) -> None:
    model_aware = _policies(k8s_run)["ollama"]
    assert [_component(p) for p in _sources(model_aware)] == ["gateway"]
    least_conn = _policies(alt_run)["ollama"]
    assert [_component(p) for p in _sources(least_conn)] == ["balancer"]
    assert [r["ports"] for r in model_aware["ingress"]] == [[{"protocol": "TCP", "port": 11434}]]


@pytest.mark.parametrize("role", ["redis", "redis-cache"])
def test_redis_is_reachable_only_from_the_gateway(
    each_k8s: tuple[StackRun, StackConfig], role: str
) -> None:
    run, _ = each_k8s
    redis = _policies(run)[role]
    assert [_component(p) for p in _sources(redis)] == ["gateway"]
    assert redis["egress"] == []
    gateway_egress = _policies(run)["gateway"]["egress"]
    redis_targets = [
        _component(p) for rule in gateway_egress if rule["ports"][0]["port"] == 6379
        for p in rule["to"]
    ]  # fmt: skip
    assert redis_targets == ["redis", "redis-cache"]


def test_state_and_cache_are_two_statefulsets(each_k8s: tuple[StackRun, StackConfig]) -> None:
    """Cache pressure can never evict state: two servers, each with its own policy."""
    run, config = each_k8s
    names = KubeNames.of(config)
    confs = {}
    for role, name in (("state", names.redis), ("cache", names.redis_cache)):
        assert named(run, "Service", name)["spec"]["selector"] == names.selector(
            "redis" if role == "state" else "redis-cache"
        )
        secret = named(run, "Secret", f"{name}-config")
        confs[role] = unwrap(secret["stringData"])["redis.conf"].splitlines()
        sts = named(run, "StatefulSet", name)
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        data_mb = config.redis.state.maxmemory_mb if role == "state" else config.redis.maxmemory_mb
        # Each sized for its own data (headroom: test_k8s_day_two).
        assert container["resources"]["limits"]["memory"] == f"{data_mb * 3 // 2 + 128}Mi"
    assert "maxmemory-policy noeviction" in confs["state"]
    assert f"maxmemory {config.redis.state.maxmemory_mb}mb" in confs["state"]
    assert f"maxmemory-policy {config.redis.eviction_policy}" in confs["cache"]
    assert f"maxmemory {config.redis.maxmemory_mb}mb" in confs["cache"]


def test_only_the_edge_is_reachable_from_anywhere(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, config = each_k8s
    open_to_all = sorted(
        name
        for name, spec in _policies(run).items()
        if any("from" not in rule for rule in spec.get("ingress", []))
    )
    # And cert-manager's HTTP-01 solver pods, while a challenge lasts.
    http01 = config.kubernetes.cert_manager is not None  # type: ignore[union-attr]
    assert open_to_all == (["acme-solver", "edge"] if http01 else ["edge"])


def test_egress_to_the_internet_only_where_models_are_pulled(
    k8s_run: StackRun, alt_run: StackRun
) -> None:
    def pulling(run: StackRun) -> list[str]:
        return sorted(
            name
            for name, spec in _policies(run).items()
            if name != "dns"  # the DNS addresses (NodeLocal DNSCache), port 53 only
            for rule in spec.get("egress", [])
            for peer in rule.get("to", [])
            if "ipBlock" in peer
        )

    # A volume per pod: the Ollama pods' init container pulls.
    assert pulling(k8s_run) == ["ollama"]
    # A shared claim: only the puller Job; the serving pods have no egress at all.
    assert pulling(alt_run) == ["model-puller"]
    assert _policies(alt_run)["ollama"]["egress"] == []
    (block,) = [
        peer["ipBlock"]
        for rule in _policies(k8s_run)["ollama"]["egress"]
        for peer in rule["to"]
        if "ipBlock" in peer
    ]
    assert "169.254.0.0/16" in block["except"]
    assert "10.0.0.0/8" in block["except"]


def test_scrapes_come_from_the_configured_prometheus(k8s_run: StackRun, alt_run: StackRun) -> None:
    operator = _sources(_policies(k8s_run)["exporters"])
    # Its Prometheus pods only, not Grafana or Alertmanager next to them.
    assert operator == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    ours = _sources(_policies(alt_run)["exporters"])
    assert [_component(p) for p in ours] == ["prometheus"]


# --- secrets ------------------------------------------------------------------------------


def _secret_values(run: StackRun) -> list[str]:
    values = [K8S_SECRETS["redisPassword"]]
    values += [e["digest"] for e in K8S_SECRETS["apiKeys"].values()]
    for r in kube_resources(run):
        if r.type == "kubernetes:core/v1:Secret":
            values += [v for v in r.plain("stringData").values() if "PRIVATE KEY" in v]
    return values


def test_no_secret_in_a_config_map(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, _ = each_k8s
    config_maps = [r for r in kube_resources(run) if r.type == "kubernetes:core/v1:ConfigMap"]
    assert len(config_maps) >= 2
    secrets = _secret_values(run)
    for config_map in config_maps:
        # No value derived from a Pulumi secret got in (the marker would say so) ...
        assert not is_rpc_secret(config_map.inputs.get("data"))
        text = "\n".join(plain_strings(config_map.inputs.get("data")))
        # ... and no secret value verbatim.
        assert not [s for s in secrets if s in text], config_map.name
        assert "PRIVATE KEY" not in text
        assert "requirepass" not in text


def test_no_secret_in_plain_inputs_of_any_object(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, _ = each_k8s
    secrets = _secret_values(run)
    resources = kube_resources(run)
    assert secrets
    assert resources
    for r in resources:
        text = "\n".join(plain_strings(dict(r.inputs)))
        assert not [s for s in secrets if s in text], r.name


def test_redis_password_stays_in_its_secret(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    names = KubeNames.of(config)
    redis = named(k8s_run, "StatefulSet", names.redis)["spec"]["template"]["spec"]
    (container,) = redis["containers"]
    assert "env" not in container
    assert container["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    (claim,) = named(k8s_run, "StatefulSet", names.redis)["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    secret = next(
        r
        for r in kube_resources(k8s_run)
        if r.type == "kubernetes:core/v1:Secret"
        and r.plain("metadata")["name"] == names.object("redis", "config")
    )
    conf = unwrap(secret.inputs["stringData"])["redis.conf"]
    assert "appendonly yes" in conf
    assert f'requirepass "{K8S_SECRETS["redisPassword"]}"' in conf


@pytest.mark.parametrize("output", ["devApiKey"])
def test_generated_dev_key_is_a_secret_output(route_run: StackRun, output: str) -> None:
    assert is_rpc_secret(route_run.outputs[output])


def test_tracing_headers_are_a_secret_reference_like_the_redis_url() -> None:
    values = k8s_values(
        gateway={"tracing": {"enabled": True, "endpoint": "http://otel.observability:4318"}}
    )
    values["otelHeaders"] = "x-api-key=tracing-backend-token"
    run = run_k8s(values)
    config = config_of(values)
    names = KubeNames.of(config)
    env = env_of(_gateway_container(run, config))
    secret_name = names.object("gateway", "secrets")
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == {
        "secretKeyRef": {"name": secret_name, "key": "OTEL_EXPORTER_OTLP_HEADERS"}
    }
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel.observability:4318"
    assert env["GATEWAY_TRACING"] == "true"
    (secret,) = [
        r
        for r in kube_resources(run)
        if r.type == "kubernetes:core/v1:Secret" and r.plain("metadata")["name"] == secret_name
    ]
    assert secret.plain("stringData")["OTEL_EXPORTER_OTLP_HEADERS"] == (
        "x-api-key=tracing-backend-token"
    )
