"""What a real cluster needs on day two, asserted on the rendered manifests: timeouts
behind a Gateway, the ACME solver and DNS reachable under default deny, drains and
grace periods sized to generations, retries and reloads at the edge, the client's
address behind proxies, and the smaller knobs (runtime class, tracing egress, Redis
headroom, IPv6, no cloud models)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pulumi
import pytest
from llm_config import StackConfig
from llm_gateway.settings import named_instance
from llm_nginx import RESOLVER_VALID_SECONDS
from llm_stack.kubernetes import drain, shutdown
from llm_stack.kubernetes import gateway as gateway_module
from llm_stack.kubernetes.edge import render_conf
from llm_stack.kubernetes.names import KubeNames
from llm_stack.kubernetes.network_policies import ACME_SOLVER_LABEL, ACME_SOLVER_PORT
from llm_stack.kubernetes.pull import WARM_SCRIPT
from llm_stack.kubernetes.workload import CONFIG_HASH_ANNOTATION, text_hash

from tests.infra.kubernetes.conftest import config_of
from tests.infra.kubernetes.manifests import env_of, kube_resources, named, of_kind
from tests.infra.kubernetes.stacks import alt_values, k8s_values, run_k8s
from tests.infra.stack_run import StackRun


def _pod(run: StackRun, kind: str, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = named(run, kind, name)["spec"]["template"]["spec"]
    return pod


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod["containers"] if c["name"] == name]
    return found


def _policies(run: StackRun) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["name"].removeprefix("llm-k8s-netpol-"): m["spec"]
        for m in of_kind(run, "NetworkPolicy")
    }


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match.group(1))


def _pre_stop_sleep(container: dict[str, Any]) -> int:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    return int(command[1])


def _conf(run: StackRun) -> str:
    text: str = named(run, "ConfigMap", "llm-k8s-nginx-conf")["data"]["nginx.conf"]
    return text


def _values(values: dict[str, Any], **kube: Any) -> dict[str, Any]:
    values["kubernetes"] = {**values["kubernetes"], **kube}
    return values


# --- 1. HTTPRoute timeouts -----------------------------------------------------------------


def test_the_route_lets_a_whole_generation_through(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    (route,) = of_kind(k8s_run, "HTTPRoute")
    (rule,) = route["spec"]["rules"]
    request = _seconds(rule["timeouts"]["request"])
    backend = _seconds(rule["timeouts"]["backendRequest"])
    # Envoy Gateway's default is 15 s for the whole response.
    assert request >= config.gateway.timeouts.total_seconds
    assert backend <= request
    assert backend >= config.gateway.timeouts.total_seconds


def test_the_route_timeout_is_configurable() -> None:
    values = k8s_values()
    values["kubernetes"]["expose"] = {**values["kubernetes"]["expose"], "routeTimeoutSeconds": 3600}
    (route,) = of_kind(run_k8s(values), "HTTPRoute")
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "3600s", "backendRequest": "3600s"}


# --- 2. the ACME solver ----------------------------------------------------------------------


def test_an_http01_solver_is_reachable_under_default_deny(k8s_run: StackRun) -> None:
    solver = _policies(k8s_run)["acme-solver"]
    assert solver["podSelector"] == {"matchLabels": {ACME_SOLVER_LABEL: "true"}}
    assert ACME_SOLVER_LABEL == "acme.cert-manager.io/http01-solver"
    assert solver["ingress"] == [{"ports": [{"protocol": "TCP", "port": ACME_SOLVER_PORT}]}]
    assert ACME_SOLVER_PORT == 8089
    assert solver["policyTypes"] == ["Ingress"]


def test_dns01_or_no_cert_manager_opens_nothing(alt_run: StackRun) -> None:
    values = k8s_values()
    values["kubernetes"]["certManager"] = {
        **values["kubernetes"]["certManager"],
        "challenge": "dns-01",
    }
    assert "acme-solver" not in _policies(run_k8s(values))
    assert "acme-solver" not in _policies(alt_run)


# --- 3. DNS ---------------------------------------------------------------------------------


def test_dns_is_allowed_by_selector_and_by_address(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    (rule,) = _policies(k8s_run)["dns"]["egress"]
    selector, *blocks = rule["to"]
    assert selector == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    # NodeLocal DNSCache runs on the host network: only an address matches it.
    assert [b["ipBlock"]["cidr"] for b in blocks] == [
        f"{config.kubernetes.dns_resolver}/32",  # type: ignore[union-attr]
        "169.254.20.10/32",
    ]
    assert rule["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def test_dns_on_openshift() -> None:
    values = _values(k8s_values(), dns={"namespace": "openshift-dns", "ports": [5353], "cidrs": []})
    (rule,) = _policies(run_k8s(values))["dns"]["egress"]
    assert rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-dns"}}}
    ]
    assert rule["ports"] == [
        {"protocol": "UDP", "port": 5353},
        {"protocol": "TCP", "port": 5353},
    ]


# --- 4. Ollama drains through the gateway ---------------------------------------------------


def test_a_stopping_ollama_pod_drains_through_the_gateway(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    names = KubeNames.of(config)
    pod = _pod(k8s_run, "StatefulSet", names.ollama)
    server = _container(pod, "ollama")
    sidecar = _container(pod, drain.CONTAINER)
    # The sidecar's preStop drains; Ollama's waits for its marker before SIGTERM.
    assert sidecar["lifecycle"]["preStop"]["exec"]["command"] == [
        "/bin/sh",
        "-c",
        drain.DRAIN_SCRIPT,
    ]
    assert "llm-gateway drain --url" in drain.DRAIN_SCRIPT
    assert "--until ready --wait --timeout" in drain.DRAIN_SCRIPT
    wait = server["lifecycle"]["preStop"]["exec"]["command"]
    assert wait[:3] == ["/bin/sh", "-c", drain.WAIT_SCRIPT]
    assert wait[4] == drain.MARKER
    env = env_of(sidecar)
    assert env["LLM_DRAIN_MARKER"] == drain.MARKER
    timeout = int(env["LLM_DRAIN_TIMEOUT"])
    # A generation fits: the drain waits for the longest one, the grace covers it.
    assert timeout >= config.gateway.timeouts.total_seconds
    assert int(wait[5]) >= timeout
    assert pod["terminationGracePeriodSeconds"] > int(wait[5])
    # The instance is named as the gateway names it (host:port of its URL).
    pod_zero = env["LLM_DRAIN_INSTANCE"].replace("$(POD_NAME)", f"{names.ollama}-0")
    assert pod_zero == named_instance(names.ollama_url(0))[0]
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["LLM_DRAIN_GATEWAY_URL"] == f"http://{names.fqdn(names.gateway)}:8000"
    # Both containers share the marker volume; only the sidecar has the key.
    mounts = {c["name"]: {m["name"] for m in c["volumeMounts"]} for c in pod["containers"]}
    assert drain.MARKER_VOLUME in mounts["ollama"] & mounts[drain.CONTAINER]
    assert "drain-key" in mounts[drain.CONTAINER]
    assert "drain-key" not in mounts["ollama"]


def test_the_drain_key_is_an_admin_key_for_no_model(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    names = KubeNames.of(config)
    secrets = {
        r.plain("metadata")["name"]: r for r in kube_resources(k8s_run) if r.type.endswith("Secret")
    }
    key = secrets[names.object("ollama", "drain-key")].plain("stringData")["key"]
    keys_file = secrets[names.object("gateway", "secrets")].plain("stringData")["keys.json"]
    entry = json.loads(keys_file)["keys"][drain.KEY_NAME]
    assert entry["digest"] == hashlib.sha256(key.encode()).hexdigest()
    assert entry["admin"] is True
    assert entry["models"] == []
    # Mounted into no other workload.
    for kind in ("Deployment", "StatefulSet"):
        for m in of_kind(k8s_run, kind):
            volumes = m["spec"]["template"]["spec"].get("volumes", [])
            uses = [
                v
                for v in volumes
                if v.get("secret", {}).get("secretName", "").endswith("drain-key")
            ]
            assert bool(uses) == (m["metadata"]["name"] == names.ollama), m["metadata"]["name"]


def test_the_drain_sidecar_may_reach_the_gateway(k8s_run: StackRun) -> None:
    policies = _policies(k8s_run)
    assert {
        "to": [
            {
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/instance": "llm-k8s",
                        "app.kubernetes.io/component": "gateway",
                    }
                }
            }
        ],
        "ports": [{"protocol": "TCP", "port": 8000}],
    } in policies["ollama"]["egress"]
    sources = [p for rule in policies["gateway"]["ingress"] for p in rule["from"]]
    components = [
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        for p in sources
    ]
    assert "ollama" in components


def test_least_conn_has_no_drain_but_leaves_dns_first(alt_run: StackRun) -> None:
    config = config_of(alt_values())
    pod = _pod(alt_run, "StatefulSet", KubeNames.of(config).ollama)
    assert [c["name"] for c in pod["containers"]] == ["ollama"]
    assert _pre_stop_sleep(pod["containers"][0]) == shutdown.OLLAMA_DNS_SECONDS
    assert "ollama" not in [
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        for rule in _policies(alt_run)["gateway"]["ingress"]
        for p in rule["from"]
    ]


# --- 6-8. edge retries, preStops and grace periods -------------------------------------------


def test_the_edge_retries_other_gateway_replicas(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, config = each_k8s
    tries = re.findall(r"proxy_next_upstream_tries (\d+);", _conf(run))
    # The gateway location(s) come first; the balancer's follow.
    assert int(tries[0]) >= 2
    assert int(tries[0]) == config.kubernetes.edge_gateway_tries  # type: ignore[union-attr]


def test_the_gateway_outlives_nginx_dns_staleness(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, config = each_k8s
    names = KubeNames.of(config)
    assert f"valid={RESOLVER_VALID_SECONDS}s" in _conf(run)
    pod = _pod(run, "Deployment", names.gateway)
    container = _container(pod, "gateway")
    pre_stop = _pre_stop_sleep(container)
    assert pre_stop > RESOLVER_VALID_SECONDS + 5  # + CoreDNS's TTL
    # The grace period covers the preStop and uvicorn's whole drain.
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + config.gateway.shutdown_grace_seconds


def test_the_example_gateway_finishes_the_longest_request(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    pod = _pod(k8s_run, "Deployment", KubeNames.of(config).gateway)
    assert pod["terminationGracePeriodSeconds"] >= config.gateway.timeouts.total_seconds


def test_the_edge_keeps_serving_while_it_is_dropped_and_finishes_streams(
    each_k8s: tuple[StackRun, StackConfig],
) -> None:
    run, config = each_k8s
    kube = config.kubernetes
    assert kube is not None
    pod = _pod(run, "Deployment", KubeNames.of(config).edge)
    pre_stop = _pre_stop_sleep(_container(pod, "nginx"))
    assert pre_stop == kube.shutdown.edge_pre_stop_seconds
    assert pre_stop > RESOLVER_VALID_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= (
        pre_stop + config.gateway.timeouts.total_seconds
    )


def test_scale_downs_are_slow_and_one_at_a_time(k8s_run: StackRun, alt_run: StackRun) -> None:
    (scaled,) = of_kind(k8s_run, "ScaledObject")
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    (hpa,) = of_kind(alt_run, "HorizontalPodAutoscaler")
    for found in (behavior, hpa["spec"]["behavior"]):
        assert found["scaleDown"]["stabilizationWindowSeconds"] == 600
        assert found["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]


# --- 7. worker_processes ---------------------------------------------------------------------


def test_nginx_runs_one_worker_per_cpu_of_its_limit(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    pod = _pod(k8s_run, "Deployment", KubeNames.of(config).edge)
    assert _container(pod, "nginx")["resources"]["limits"]["cpu"] == "1"
    assert re.search(r"^worker_processes 1;$", _conf(k8s_run), re.M)
    assert "worker_processes auto" not in _conf(k8s_run)


# --- 9. the gateway after Ollama, ready without it -------------------------------------------


def test_the_gateway_is_created_after_ollama_with_its_own_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, pulumi.ResourceOptions] = {}
    real = gateway_module.k8s.apps.v1.Deployment

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, name: str, *args: Any, opts: Any = None, **kwargs: Any) -> None:
            seen[name] = opts
            super().__init__(name, *args, opts=opts, **kwargs)

    monkeypatch.setattr(gateway_module.k8s.apps.v1, "Deployment", Recording)
    run_k8s(k8s_values())
    opts = seen["gateway"]
    depends = [getattr(d, "_name", None) for d in opts.depends_on or []]  # type: ignore[union-attr]
    assert "ollama" in depends
    assert opts.custom_timeouts is not None
    assert opts.custom_timeouts.create
    assert opts.custom_timeouts.update


# --- 10. certificate reloads -----------------------------------------------------------------


def test_nginx_pods_reload_a_renewed_certificate(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, config = each_k8s
    names = KubeNames.of(config)
    pod = _pod(run, "Deployment", names.edge)
    assert pod["shareProcessNamespace"] is True
    reloader = _container(pod, "cert-reloader")
    assert reloader["image"] == config.edge.image
    nginx = _container(pod, "nginx")
    assert reloader["volumeMounts"] == nginx["volumeMounts"]
    # The same user as nginx (the pod's): it may signal the master.
    assert "runAsUser" not in reloader["securityContext"]


def test_a_new_certificate_does_not_roll_the_edge(
    each_k8s: tuple[StackRun, StackConfig],
) -> None:
    """Only the config is in the template's hash: the reload sidecar takes the cert."""
    run, config = each_k8s
    template = named(run, "Deployment", KubeNames.of(config).edge)["spec"]["template"]
    assert template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] == text_hash(
        [render_conf(config)]
    )


# --- 11. the client's address behind the Gateway ----------------------------------------------


def test_behind_a_gateway_the_edge_sees_the_client(k8s_run: StackRun, alt_run: StackRun) -> None:
    conf = _conf(k8s_run)
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"):
        assert f"set_real_ip_from {cidr};" in conf
    assert "real_ip_header X-Forwarded-For;" in conf
    assert "real_ip_recursive on;" in conf
    # A load balancer with externalTrafficPolicy Local keeps the address itself.
    assert "set_real_ip_from" not in _conf(alt_run)


def test_pod_cidrs_set_the_internal_allow_list_and_the_trusted_proxies() -> None:
    values = _values(k8s_values(), ipv6=True, podCidrs=["10.42.0.0/16", "2001:db8:42::/56"])
    conf = render_conf(config_of(values))
    assert re.findall(r"set_real_ip_from (\S+);", conf) == ["10.42.0.0/16", "2001:db8:42::/56"]
    assert "allow 2001:db8:42::/56;" in conf
    assert "allow 192.168.0.0/16;" not in conf


def test_trusted_proxies_are_configurable() -> None:
    values = k8s_values()
    values["kubernetes"]["expose"] = {
        **values["kubernetes"]["expose"],
        "trustedProxies": ["10.42.0.0/16"],
    }
    conf = render_conf(config_of(values))
    assert re.findall(r"set_real_ip_from (\S+);", conf) == ["10.42.0.0/16"]


# --- 12. the rest ---------------------------------------------------------------------------


def test_gpu_runtime_class(k8s_run: StackRun) -> None:
    config = config_of(k8s_values())
    assert "runtimeClassName" not in _pod(k8s_run, "StatefulSet", KubeNames.of(config).ollama)
    values = k8s_values()
    values["kubernetes"]["gpu"] = {**values["kubernetes"]["gpu"], "runtimeClassName": "nvidia"}
    pod = _pod(run_k8s(values), "StatefulSet", KubeNames.of(config).ollama)
    assert pod["runtimeClassName"] == "nvidia"


def test_tracing_opens_egress_to_the_collector() -> None:
    values = k8s_values(
        gateway={"tracing": {"enabled": True, "endpoint": "http://otel.observability:4318"}}
    )
    values["kubernetes"]["traceCollector"] = {
        "namespace": "observability",
        "podLabels": {"app": "otel-collector"},
    }
    egress = _policies(run_k8s(values))["gateway"]["egress"]
    assert {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "observability"}
                },
                "podSelector": {"matchLabels": {"app": "otel-collector"}},
            }
        ],
        "ports": [{"protocol": "TCP", "port": 4318}],
    } in egress


def test_no_tracing_no_collector_egress(k8s_run: StackRun) -> None:
    ports = [p["port"] for r in _policies(k8s_run)["gateway"]["egress"] for p in r["ports"]]
    assert sorted(ports) == [6379, 11434]


def test_redis_has_headroom_above_maxmemory(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, config = each_k8s
    names = KubeNames.of(config)
    for name, data_mb in (
        (names.redis, config.redis.state.maxmemory_mb),
        (names.redis_cache, config.redis.maxmemory_mb),
    ):
        pod = _pod(run, "StatefulSet", name)
        limit = pod["containers"][0]["resources"]["limits"]["memory"]
        assert limit.endswith("Mi")
        # Fragmentation and the AOF rewrite's copy-on-write pages above the data.
        assert int(limit[:-2]) >= 1.5 * data_mb


def test_ollama_never_proxies_to_the_cloud(each_k8s: tuple[StackRun, StackConfig]) -> None:
    run, config = each_k8s
    pod = _pod(run, "StatefulSet", KubeNames.of(config).ollama)
    assert env_of(_container(pod, "ollama"))["OLLAMA_NO_CLOUD"] == "1"


def test_dual_stack() -> None:
    values = _values(k8s_values(), ipv6=True)
    run = run_k8s(values)
    config = config_of(values)
    names = KubeNames.of(config)
    conf = _conf(run)
    assert "listen [::]:8443 ssl;" in conf
    assert "listen [::]:8880;" in conf
    assert "ipv6=on" in conf
    assert (
        env_of(_container(_pod(run, "Deployment", names.gateway), "gateway"))["GATEWAY_HOST"]
        == "::"
    )
    ollama = env_of(_container(_pod(run, "StatefulSet", names.ollama), "ollama"))
    assert ollama["OLLAMA_HOST"] == "[::]:11434"
    blocks = [
        peer["ipBlock"]["cidr"]
        for rule in _policies(run)["ollama"]["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]
    assert blocks == ["0.0.0.0/0", "::/0"]
    redis_conf = next(
        r.plain("stringData")["redis.conf"]
        for r in kube_resources(run)
        if r.type.endswith("Secret") and r.plain("metadata")["name"] == "llm-k8s-redis-config"
    )
    assert "bind * -::*" in redis_conf.splitlines()
    # IPv4-only stays IPv4-only.
    assert "[::]" not in render_conf(config_of(k8s_values()))


def test_ollama_pods_can_load_their_models_before_they_are_ready(
    k8s_run: StackRun, route_run: StackRun
) -> None:
    config = config_of(k8s_values())
    names = KubeNames.of(config)
    lifecycle = _container(_pod(route_run, "StatefulSet", names.ollama), "ollama")["lifecycle"]
    assert lifecycle["postStart"]["exec"]["command"] == [
        "/bin/sh",
        "-c",
        WARM_SCRIPT,
        "warm",
        "llama3.1:8b",
    ]
    # Not asked: no hook.
    plain = _container(_pod(k8s_run, "StatefulSet", names.ollama), "ollama")["lifecycle"]
    assert "postStart" not in plain
