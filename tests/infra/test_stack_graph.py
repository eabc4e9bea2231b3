"""The resource graph of the real program for Pulumi.dev.yaml and Pulumi.prod.yaml.

Each stack file is read as the CLI reads it and the program runs once per stack
under Pulumi mocks (conftest.py); these tests assert on what it declared.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from llm_config import StackConfig
from llm_stack.docker.monitoring import GRAFANA_PASSWORD_FILE
from llm_stack.docker.redis import CLI_PASSWORD_PATH
from llm_stack.shared.names import StackNames
from pulumi.runtime.rpc import is_rpc_secret

from tests.infra.stack_run import (
    Declared,
    StackRun,
    labels,
    plain_strings,
    prod_secrets,
    run_stack,
    stack_values,
    tls_pair,
    unwrap,
)

CONTAINER = "docker:index/container:Container"
ROLE_PARENT = {
    "ollama": "llm-stack:ollama:Pool",
    "model-puller": "llm-stack:ollama:Pool",
    "redis": "llm-stack:redis:Cache",
    "redis-cache": "llm-stack:redis:Cache",
    "gateway": "llm-stack:gateway:Service",
    "nginx": "llm-stack:edge:Nginx",
    "prometheus": "llm-stack:monitoring:Monitoring",
    "grafana": "llm-stack:monitoring:Monitoring",
    "nginx-exporter": "llm-stack:monitoring:Monitoring",
    "gpu-exporter": "llm-stack:monitoring:Monitoring",
}


def env_of(container: Declared) -> dict[str, str]:
    return dict(e.split("=", 1) for e in container.plain("envs", []))


def network_names(container: Declared) -> set[str]:
    return {n["name"] for n in container.plain("networksAdvanced", [])}


def expected_containers(config: StackConfig) -> Counter[str]:
    counts = Counter(
        {
            "ollama": config.ollama.instances,
            "model-puller": 1,
            "redis": 1,
            "redis-cache": 1,
            "gateway": config.gateway.replicas,
            "nginx": 1,
            "prometheus": 1,
            "nginx-exporter": 1,
        }
    )
    if config.monitoring.grafana.enabled:
        counts["grafana"] = 1
    if config.ollama.uses_gpus:
        counts["gpu-exporter"] = 1
    return counts


# --- counts and structure -----------------------------------------------------------


def test_resource_counts_follow_the_stack_config(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, config = each_stack
    roles = Counter(labels(c)["llm-stack.role"] for c in run.containers)
    assert roles == expected_containers(config)
    counts = Counter(r.type for r in run.resources)
    assert counts["docker:index/network:Network"] == 3
    assert counts["docker:index/volume:Volume"] == (5 if config.monitoring.grafana.enabled else 4)
    assert counts["docker-build:index:Image"] == 1
    # One pulled image per service image (the puller shares Ollama's; each Redis names
    # the same one, a no-op pull), plus the local lookup of the built gateway image.
    assert counts["docker:index/remoteImage:RemoteImage"] == 8 + int(config.ollama.uses_gpus)
    assert counts["llm-stack:index:Stack"] == 1


def test_dev_and_prod_shapes(dev_run: StackRun, prod_run: StackRun) -> None:
    assert len(dev_run.by_role("ollama")) == 1
    assert len(prod_run.by_role("ollama")) == 2
    assert len(prod_run.by_role("gateway")) == 2
    assert not dev_run.by_role("gpu-exporter")
    assert len(prod_run.by_role("gpu-exporter")) == 1
    # dev generates its credentials and certificate; prod takes them from its config.
    dev_types = Counter(r.type for r in dev_run.resources)
    prod_types = Counter(r.type for r in prod_run.resources)
    assert dev_types["random:index/randomPassword:RandomPassword"] == 3
    assert dev_types["tls:index/selfSignedCert:SelfSignedCert"] == 1
    assert prod_types["random:index/randomPassword:RandomPassword"] == 0
    assert prod_types["tls:index/selfSignedCert:SelfSignedCert"] == 0


def test_every_container_sits_in_its_service_component(
    each_stack: tuple[StackRun, StackConfig],
) -> None:
    run, config = each_stack
    names = StackNames.of(config)
    for container in run.containers:
        role = labels(container)["llm-stack.role"]
        assert container.parent_type == ROLE_PARENT[role]
        assert labels(container)["llm-stack.stack"] == config.name_prefix
        assert str(container.plain("name")).startswith(names.prefix + "-")


def test_service_components_sit_under_the_stack_component(dev_run: StackRun) -> None:
    components = [r for r in dev_run.resources if r.type.startswith("llm-stack:")]
    (top,) = [c for c in components if c.type == "llm-stack:index:Stack"]
    assert top.parent_type == "pulumi:pulumi:Stack"
    assert {c.type for c in components if c is not top} == {
        *ROLE_PARENT.values(),
        "llm-stack:network:Networks",
        "llm-stack:storage:Volumes",
        "llm-stack:secrets:Credentials",
        "llm-stack:tls:EdgeCertificate",
    }
    assert all(c.parent_type == "llm-stack:index:Stack" for c in components if c is not top)


def test_container_names(prod_run: StackRun, prod_config: StackConfig) -> None:
    names = {c.plain("name") for c in prod_run.containers}
    (puller,) = [n for n in names if "model-puller" in n]
    assert re.fullmatch(r"llm-prod-model-puller-[0-9a-f]{8}", puller)
    ollama = prod_config.ollama
    assert puller == StackNames.of(prod_config).model_puller(ollama.models, ollama.image)
    assert names - {puller} == {
        "llm-prod-ollama-0",
        "llm-prod-ollama-1",
        "llm-prod-redis",
        "llm-prod-redis-cache",
        "llm-prod-gateway-0",
        "llm-prod-gateway-1",
        "llm-prod-nginx",
        "llm-prod-prometheus",
        "llm-prod-grafana",
        "llm-prod-nginx-exporter",
        "llm-prod-gpu-exporter",
    }


def test_a_new_model_list_gets_a_new_puller_name() -> None:
    names = StackNames("llm-prod")
    assert names.model_puller(["llama3.1:8b"]) == names.model_puller(["llama3.1:8b"])
    assert names.model_puller(["llama3.1:8b"]) != names.model_puller(["llama3.1:8b", "qwen3:4b"])
    # A new Ollama image makes a new puller too (a same-name replacement would collide).
    assert names.model_puller(["llama3.1:8b"], "ollama:a") != names.model_puller(
        ["llama3.1:8b"], "ollama:b"
    )


# --- GPUs -----------------------------------------------------------------------------


def test_prod_pins_each_instance_to_its_own_gpu(
    prod_run: StackRun, prod_config: StackConfig
) -> None:
    gpus = {c.plain("name"): c.plain("gpus") for c in prod_run.by_role("ollama")}
    assert gpus == {
        f"llm-prod-ollama-{i}": f"device={gpu}" for i, gpu in enumerate(prod_config.ollama.gpus)
    }
    assert len(set(gpus.values())) == len(gpus)
    # The image sets NVIDIA_VISIBLE_DEVICES=all: each instance names its own GPU, so the
    # pin holds on a host whose default runtime is nvidia too.
    visible = {
        c.plain("name"): env_of(c)["NVIDIA_VISIBLE_DEVICES"] for c in prod_run.by_role("ollama")
    }
    assert visible == {f"llm-prod-ollama-{i}": gpu for i, gpu in enumerate(prod_config.ollama.gpus)}
    (puller,) = prod_run.by_role("model-puller")
    assert env_of(puller)["NVIDIA_VISIBLE_DEVICES"] == "void"
    # The exporter watches every GPU with one request the provider reads back as is
    # (a device list would be split by Docker's CSV parser, see test_provider_readback).
    (exporter,) = prod_run.by_role("gpu-exporter")
    assert exporter.plain("gpus") == "all"
    # gpus and device_requests are never combined.
    assert all(not c.plain("deviceRequests") for c in prod_run.containers)
    # Only the pool and the exporter touch GPUs; the puller only downloads.
    with_gpus = {labels(c)["llm-stack.role"] for c in prod_run.containers if c.plain("gpus")}
    assert with_gpus == {"ollama", "gpu-exporter"}


def test_dev_is_cpu_only(dev_run: StackRun) -> None:
    assert all(not c.plain("gpus") and not c.plain("deviceRequests") for c in dev_run.containers)
    assert [labels(c)["llm-stack.gpu"] for c in dev_run.by_role("ollama")] == ["cpu"]
    # No GPU even on a host whose default runtime is nvidia.
    assert [env_of(c)["NVIDIA_VISIBLE_DEVICES"] for c in dev_run.by_role("ollama")] == ["void"]


# --- ports and networks ---------------------------------------------------------------


def test_only_the_edge_and_grafana_publish(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, config = each_stack
    published = {
        labels(c)["llm-stack.role"]: {
            (int(p["internal"]), int(p["external"]), p["ip"]) for p in c.plain("ports")
        }
        for c in run.containers
        if c.plain("ports")
    }
    grafana = config.monitoring.grafana
    assert published == {
        "nginx": {
            (443, config.edge.https_port, config.edge.bind_address),
            (80, config.edge.http_port, config.edge.bind_address),
        },
        "grafana": {(3000, grafana.port, grafana.bind_address)},
    }
    assert not any(c.plain("publishAllPorts") or c.plain("networkMode") for c in run.containers)


def test_prod_edge_declares_its_wildcard_bind(prod_run: StackRun, dev_run: StackRun) -> None:
    (prod_nginx,) = prod_run.by_role("nginx")
    assert labels(prod_nginx).get("llm-stack.wildcard-bind") == "true"
    (dev_nginx,) = dev_run.by_role("nginx")
    assert "llm-stack.wildcard-bind" not in labels(dev_nginx)
    (prod_grafana,) = prod_run.by_role("grafana")
    assert "llm-stack.wildcard-bind" not in labels(prod_grafana)  # 127.0.0.1 in prod too


def test_networks_and_membership(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, config = each_stack
    names = StackNames.of(config)
    nets = {n.plain("name"): n for n in run.of_type("docker:index/network:Network")}
    assert set(nets) == {names.internal_network, names.edge_network, names.egress_network}
    internal = nets[names.internal_network]
    assert internal.plain("internal") is True
    assert [c["subnet"] for c in internal.plain("ipamConfigs")] == [config.network.internal_subnet]
    assert not nets[names.edge_network].plain("internal")
    assert not nets[names.egress_network].plain("internal")

    expected = {
        "ollama": {names.internal_network},
        "model-puller": {names.egress_network},
        "redis": {names.internal_network},
        "redis-cache": {names.internal_network},
        "gateway": {names.internal_network},
        "prometheus": {names.internal_network},
        "nginx-exporter": {names.internal_network},
        "gpu-exporter": {names.internal_network},
        "nginx": {names.internal_network, names.edge_network},
        "grafana": {names.internal_network, names.edge_network},
    }
    for container in run.containers:
        assert network_names(container) == expected[labels(container)["llm-stack.role"]], (
            container.plain("name")
        )


def test_volumes_are_mounted_where_the_data_lives(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, config = each_stack
    names = StackNames.of(config)
    mounts = {
        c.plain("name"): {(v["volumeName"], v["containerPath"]) for v in c.plain("volumes", [])}
        for c in run.containers
    }
    models = (names.models_volume, "/root/.ollama")
    assert mounts[names.model_puller(config.ollama.models, config.ollama.image)] == {models}
    for i in range(config.ollama.instances):
        assert mounts[names.ollama(i)] == {models}
    assert mounts[names.redis] == {(names.redis_volume, "/data")}
    assert mounts[names.redis_cache] == {(names.redis_cache_volume, "/data")}
    assert mounts[names.prometheus] == {(names.prometheus_volume, "/prometheus")}
    assert mounts[names.grafana] == {(names.grafana_volume, "/var/lib/grafana")}
    assert mounts[names.gateway(0)] == set()


# --- health, restart, images ----------------------------------------------------------


def test_every_container_has_a_healthcheck_and_restart_policy(
    each_stack: tuple[StackRun, StackConfig],
) -> None:
    run, _ = each_stack
    for container in run.containers:
        role = labels(container)["llm-stack.role"]
        tests = (container.plain("healthcheck") or {}).get("tests")
        if role == "nginx-exporter":
            # Scratch image: nothing inside can run a check; the exemption says why.
            assert tests is None
            assert "scratch image" in labels(container)["llm-stack.no-healthcheck"]
        else:
            assert tests, role
            assert tests[0] in ("CMD", "CMD-SHELL"), role
            assert "curl" not in " ".join(tests), role  # none of these images ships curl
        if role == "model-puller":
            assert container.plain("restart") == "no"
        else:
            assert container.plain("restart") == "unless-stopped", role


def test_ollama_healthcheck_and_start_period(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, config = each_stack
    for container in run.by_role("ollama"):
        check = container.plain("healthcheck")
        assert check["tests"] == ["CMD", "ollama", "show", config.ollama.models[0]]
        # Go's form, as the provider reads it back (120 s -> 2m0s, 300 s -> 5m0s).
        assert (
            check["startPeriod"] == {120: "2m0s", 300: "5m0s"}[config.ollama.start_period_seconds]
        )
        assert check["interval"] == "30s"


def test_images_are_pinned_and_used(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, config = each_stack
    pulled = {
        i.plain("name"): i.plain("imageId")
        for i in run.of_type("docker:index/remoteImage:RemoteImage")
    }
    expected = {
        config.ollama.image,
        config.redis.image,
        config.edge.image,
        config.monitoring.prometheus_image,
        config.monitoring.nginx_exporter_image,
        config.monitoring.grafana.image,
        "llm-stack/gateway:0.1.0",  # the build, found on the host by its tag
    }
    if config.ollama.uses_gpus:
        expected.add(config.monitoring.gpu_exporter_image)
    assert set(pulled) == expected
    images = run.of_type("docker:index/remoteImage:RemoteImage")
    assert all(i.plain("keepLocally") is True for i in images)
    (built,) = run.of_type("docker-build:index:Image")
    assert built.plain("tags") == ["llm-stack/gateway:0.1.0"]
    assert built.plain("push") is False
    assert built.plain("load") is True
    assert built.plain("dockerfile")["location"].endswith("gateway/Dockerfile")
    (local,) = [i for i in images if i.name == "gateway-local-image"]
    # A rebuild (new context hash) replaces the lookup, whose new id replaces the replicas.
    assert local.plain("triggers") == {"contextHash": built.plain("contextHash")}
    for container in run.containers:
        # Image ids only: the provider reads a container's image back as an id.
        assert container.plain("image") in pulled.values(), container.plain("name")
    by_role_image = {labels(c)["llm-stack.role"]: c.plain("image") for c in run.containers}
    assert by_role_image["model-puller"] == by_role_image["ollama"] == pulled[config.ollama.image]
    assert by_role_image["gateway"] == pulled["llm-stack/gateway:0.1.0"]


# --- the model puller and the pool ----------------------------------------------------


def test_the_puller_pulls_every_model_once_and_exits(
    each_stack: tuple[StackRun, StackConfig],
) -> None:
    run, config = each_stack
    (puller,) = run.by_role("model-puller")
    assert puller.plain("attach") is True
    assert puller.plain("mustRun") is False
    assert puller.plain("logs") is True
    assert puller.plain("entrypoints")[:2] == ["/bin/sh", "-c"]
    assert puller.plain("command") == list(config.ollama.models)
    assert "OLLAMA_NOPRUNE" not in env_of(puller)  # the one writer may prune
    assert env_of(puller)["OLLAMA_HOST"].startswith("127.0.0.1:")


def test_instances_serve_without_pulling_or_pruning(
    each_stack: tuple[StackRun, StackConfig],
) -> None:
    run, config = each_stack
    for container in run.by_role("ollama"):
        env = env_of(container)
        assert env == {
            "NVIDIA_VISIBLE_DEVICES": labels(container)["llm-stack.gpu"].replace("cpu", "void"),
            "OLLAMA_HOST": "0.0.0.0:11434",
            "OLLAMA_KEEP_ALIVE": config.ollama.keep_alive,
            "OLLAMA_NUM_PARALLEL": str(config.ollama.num_parallel),
            "OLLAMA_MAX_QUEUE": str(config.ollama.max_queue),
            "OLLAMA_MAX_LOADED_MODELS": str(config.ollama.max_loaded_models),
            "OLLAMA_NOPRUNE": "1",
            "OLLAMA_NO_CLOUD": "1",
            **(
                {"OLLAMA_CONTEXT_LENGTH": str(config.ollama.context_length)}
                if config.ollama.context_length is not None
                else {}
            ),
        }
        assert container.plain("memory") == config.ollama.memory_mb
        assert container.plain("memorySwap") == config.ollama.memory_mb  # no swap on top
        # Gated on the puller's exit code (see test_a_failed_pull_starts_no_instance).
        assert labels(container)["llm-stack.models-ready"] == "true"


# --- secrets --------------------------------------------------------------------------


def _generated_secrets(run: StackRun) -> list[str]:
    """Values the mocked providers generated as secrets (passwords, the private key)."""
    values = [
        str(r.plain("result")) for r in run.of_type("random:index/randomPassword:RandomPassword")
    ]
    values += [
        str(r.plain("privateKeyPem")) for r in run.of_type("tls:index/privateKey:PrivateKey")
    ]
    return values


def _secrets_of(run: StackRun) -> list[str]:
    if run.stack == "prod":
        given = prod_secrets()
        digests = [entry["digest"] for entry in given["apiKeys"].values()]
        return [given["redisPassword"], given["grafanaAdminPassword"], given["tlsKey"], *digests]
    dev_key = unwrap(run.outputs["devApiKey"])
    return [*_generated_secrets(run), dev_key]


def _leaks(value: Any, secrets: list[str]) -> list[str]:
    return [s[:12] + "..." for text in plain_strings(value) for s in secrets if s and s in text]


def test_secrets_appear_only_inside_secret_values(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, _ = each_stack
    secrets = _secrets_of(run)
    assert secrets
    generators = {"random:index/randomPassword:RandomPassword", "tls:index/privateKey:PrivateKey"}
    for resource in run.resources:
        if resource.type in generators:
            continue  # their outputs are secret by the provider schema, not by inputs
        assert _leaks(dict(resource.inputs), secrets) == [], resource.urn
    for key, value in run.outputs.items():
        assert _leaks(value, secrets) == [], key


def test_secrets_reach_the_containers_that_need_them(prod_run: StackRun) -> None:
    given = prod_secrets()
    redis = prod_run.container("llm-prod-redis")
    assert is_rpc_secret(redis.inputs["uploads"])
    assert prod_run.uploads(redis)[CLI_PASSWORD_PATH] == given["redisPassword"]
    grafana = prod_run.container("llm-prod-grafana")
    assert is_rpc_secret(grafana.inputs["uploads"])
    assert prod_run.uploads(grafana)[GRAFANA_PASSWORD_FILE] == given["grafanaAdminPassword"]
    assert env_of(grafana)["GF_SECURITY_ADMIN_PASSWORD__FILE"] == GRAFANA_PASSWORD_FILE
    assert env_of(grafana)["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    for gateway in prod_run.by_role("gateway"):
        assert is_rpc_secret(gateway.inputs["envs"])
        assert is_rpc_secret(gateway.inputs["uploads"])
        assert given["redisPassword"] in env_of(gateway)["GATEWAY_REDIS_URL"]
    nginx = prod_run.container("llm-prod-nginx")
    assert is_rpc_secret(nginx.inputs["uploads"])
    assert prod_run.uploads(nginx)["/etc/nginx/tls/edge.key"] == given["tlsKey"]
    assert prod_run.uploads(nginx)["/etc/nginx/tls/edge.crt"] == given["tlsCert"]
    key_upload = next(u for u in nginx.plain("uploads") if u["file"].endswith("edge.key"))
    assert key_upload["permissions"] == "0600"


def test_dev_generates_its_credentials(dev_run: StackRun) -> None:
    assert is_rpc_secret(dev_run.outputs["devApiKey"])
    assert str(unwrap(dev_run.outputs["devApiKey"])).startswith("llmsk-")
    generated = {r.name for r in dev_run.of_type("random:index/randomPassword:RandomPassword")}
    assert generated == {"redis-password", "grafana-admin-password", "dev-api-key"}
    for password in dev_run.of_type("random:index/randomPassword:RandomPassword"):
        assert password.plain("special") is False  # travels inside a URL
        assert password.plain("length") >= 32
    redis = dev_run.container("llm-dev-redis")
    assert dev_run.uploads(redis)[CLI_PASSWORD_PATH] in _generated_secrets(dev_run)
    (cert,) = dev_run.of_type("tls:index/selfSignedCert:SelfSignedCert")
    assert "localhost" in cert.plain("dnsNames")
    assert "127.0.0.1" in cert.plain("ipAddresses")
    nginx = dev_run.container("llm-dev-nginx")
    assert dev_run.uploads(nginx)["/etc/nginx/tls/edge.crt"] == tls_pair("localhost").cert_pem


def test_generated_grafana_password_is_a_secret_output(dev_run: StackRun) -> None:
    assert is_rpc_secret(dev_run.outputs["grafanaAdminPassword"])
    grafana = dev_run.container("llm-dev-grafana")
    password = unwrap(dev_run.outputs["grafanaAdminPassword"])
    assert dev_run.uploads(grafana)[GRAFANA_PASSWORD_FILE] == password


@pytest.mark.parametrize("role", ["redis", "redis-cache", "grafana"])
def test_no_password_in_the_container_config(
    role: str, each_stack: tuple[StackRun, StackConfig]
) -> None:
    """`docker inspect` shows env, command, entrypoint, labels: none holds a password."""
    run, _ = each_stack
    (container,) = run.by_role(role)
    secrets = _secrets_of(run)
    for key in ("envs", "command", "entrypoints", "labels", "healthcheck", "user"):
        value = container.plain(key)
        assert not is_rpc_secret(container.inputs.get(key)), key
        assert _leaks(value, secrets) == [], key


def test_secret_files_are_unreadable_to_others(each_stack: tuple[StackRun, StackConfig]) -> None:
    """Uploaded files are root:root; each secret one is readable by its service only."""
    run, _ = each_stack
    modes = {
        (labels(c)["llm-stack.role"], u["file"]): u["permissions"]
        for c in run.containers
        for u in c.plain("uploads", [])
    }
    assert modes[("redis", "/usr/local/etc/redis/redis.conf")] == "0440"
    assert modes[("redis", CLI_PASSWORD_PATH)] == "0440"
    assert modes[("redis-cache", "/usr/local/etc/redis/redis.conf")] == "0440"
    assert modes[("redis-cache", CLI_PASSWORD_PATH)] == "0440"
    assert modes[("grafana", GRAFANA_PASSWORD_FILE)] == "0440"
    assert modes[("nginx", "/etc/nginx/tls/edge.key")] == "0600"
    # Group root is how the non-root servers read them: Redis runs as redis with group
    # root, Grafana's image runs uid 472 with gid 0.
    for role in ("redis", "redis-cache"):
        (redis,) = run.by_role(role)
        assert redis.plain("user") == "redis:root"


def test_prod_exports_no_generated_credentials(prod_run: StackRun) -> None:
    assert "devApiKey" not in prod_run.outputs
    assert "grafanaAdminPassword" not in prod_run.outputs


# --- stack outputs --------------------------------------------------------------------


def test_stack_outputs(each_stack: tuple[StackRun, StackConfig]) -> None:
    run, config = each_stack
    names = StackNames.of(config)
    out = run.outputs
    port = config.edge.https_port
    expected_url = f"https://{config.edge.hostname}" + ("" if port == 443 else f":{port}")
    assert out["gatewayUrl"] == expected_url
    assert out["grafanaUrl"] == f"http://127.0.0.1:{config.monitoring.grafana.port}"
    assert out["environment"] == config.environment
    assert out["networks"] == {
        "internal": names.internal_network,
        "edge": names.edge_network,
        "egress": names.egress_network,
    }
    assert out["volumes"]["models"] == names.models_volume
    assert out["containers"]["ollama"] == [names.ollama(i) for i in range(config.ollama.instances)]
    assert out["containers"]["gateway"] == [
        names.gateway(i) for i in range(config.gateway.replicas)
    ]
    declared = {c.plain("name") for c in run.containers}
    assert {n for names_ in out["containers"].values() for n in names_} == declared
    ports = {(p["name"], p["address"], int(p["port"])) for p in out["edgePorts"]}
    assert ports == {
        ("https", config.edge.bind_address, config.edge.https_port),
        ("http", config.edge.bind_address, config.edge.http_port),
        ("grafana", config.monitoring.grafana.bind_address, config.monitoring.grafana.port),
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_gateway_url_matches_stack_file(stack: str, dev_run: StackRun, prod_run: StackRun) -> None:
    run = dev_run if stack == "dev" else prod_run
    assert (
        run.outputs["gatewayUrl"]
        == {
            "dev": "https://localhost:8443",
            "prod": "https://llm.example.com",
        }[stack]
    )


def test_tracing_reaches_the_gateways_with_its_headers_kept_secret() -> None:
    values = stack_values("prod", prod_secrets())
    values["gateway"] = {
        **values["gateway"],
        "tracing": {"enabled": True, "endpoint": "http://otel:4318", "samplingRatio": 0.2},
    }
    values["otelHeaders"] = "x-api-key=tracing-backend-token"
    run = run_stack("prod", values)
    for gateway in run.by_role("gateway"):
        env = env_of(gateway)
        assert env["GATEWAY_TRACING"] == "true"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4318"
        assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.2"
        assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "x-api-key=tracing-backend-token"
        assert is_rpc_secret(gateway.inputs["envs"])
    for key, value in run.outputs.items():
        assert _leaks(value, ["x-api-key=tracing-backend-token"]) == [], key


def test_state_and_cache_live_in_two_redis_servers(
    each_stack: tuple[StackRun, StackConfig],
) -> None:
    """Cache pressure can never evict state: the state server never evicts, the cache
    evicts within its own maxmemory, and the gateway gets one URL for each."""
    run, config = each_stack
    names = StackNames.of(config)
    password = run.uploads(run.container(names.redis))[CLI_PASSWORD_PATH]
    state = run.uploads(run.container(names.redis))["/usr/local/etc/redis/redis.conf"]
    cache = run.uploads(run.container(names.redis_cache))["/usr/local/etc/redis/redis.conf"]
    assert "maxmemory-policy noeviction" in state.splitlines()
    assert "appendonly yes" in state.splitlines()
    assert f"maxmemory {config.redis.state.maxmemory_mb}mb" in state.splitlines()
    assert f"maxmemory-policy {config.redis.eviction_policy}" in cache.splitlines()
    assert f"maxmemory {config.redis.maxmemory_mb}mb" in cache.splitlines()
    for gateway in run.by_role("gateway"):
        env = env_of(gateway)
        assert env["GATEWAY_REDIS_URL"].endswith(f"@{names.redis}:6379/0")
        assert env["GATEWAY_CACHE_REDIS_URL"].endswith(f"@{names.redis_cache}:6379/0")
        assert password in env["GATEWAY_CACHE_REDIS_URL"]
    assert run.outputs["volumes"]["redisCacheData"] == names.redis_cache_volume
