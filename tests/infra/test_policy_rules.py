"""Each policy rule on good and bad inputs, directly and through its pulumi-policy wrapper.

Properties are written the way a policy pack receives them: engine (camelCase) names,
numbers as floats, labels as {label, value} lists.
"""

from __future__ import annotations

from typing import Any

import pytest
from llm_stack.policy import policies
from llm_stack.policy.docker_rules import (
    BUILT_IMAGE,
    CONTAINER,
    NETWORK,
    REMOTE_IMAGE,
    ResourceView,
    health_and_restart,
    image_problem,
    network_membership,
    pinned_images,
    plain_text_secrets,
    published_ports,
)
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

STRONG = "Zq8vN3kLw2Rt7YpB5mXc"


def container(role: str, **props: Any) -> dict[str, Any]:
    labels = [
        {"label": "llm-stack.role", "value": role},
        {"label": "llm-stack.stack", "value": "t"},
    ]
    labels += [{"label": k, "value": v} for k, v in props.pop("extra_labels", {}).items()]
    base: dict[str, Any] = {
        "name": f"t-{role}",
        "image": "sha256:" + "a" * 64,
        "labels": labels,
        "restart": "unless-stopped",
        "healthcheck": {"tests": ["CMD", "true"], "interval": "15s"},
        "networksAdvanced": [{"name": "t-internal"}],
    }
    base.update(props)
    return base


def port(internal: int, external: int | None, ip: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"internal": float(internal), "protocol": "tcp"}
    if external is not None:
        entry["external"] = float(external)
    if ip is not None:
        entry["ip"] = ip
    return entry


# --- pinned images ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "ollama/ollama:0.32.15",
        "nginx:1.27.5-alpine",
        "localhost:5000/team/gateway:1.0",
        "redis@sha256:" + "b" * 64,
        "grafana/grafana:11.6.0@sha256:" + "c" * 64,
        "sha256:" + "d" * 64,
    ],
)
def test_pinned_references_pass(reference: str) -> None:
    assert image_problem(reference) is None
    assert pinned_images(REMOTE_IMAGE, {"name": reference}) == []


@pytest.mark.parametrize(
    ("reference", "why"),
    [
        ("ollama/ollama", "no tag"),
        ("ollama/ollama:latest", "latest"),
        ("localhost:5000/team/gateway", "no tag"),
        ("nginx:latest", "latest"),
    ],
)
def test_unpinned_references_fail(reference: str, why: str) -> None:
    (problem,) = pinned_images(REMOTE_IMAGE, {"name": reference})
    assert why in problem
    assert reference in problem


def test_built_image_tags_and_container_literals_are_checked() -> None:
    assert pinned_images(BUILT_IMAGE, {"tags": ["llm-stack/gateway:0.1.0"]}) == []
    assert pinned_images(BUILT_IMAGE, {"tags": []}) != []
    assert "latest" in pinned_images(BUILT_IMAGE, {"tags": ["llm-stack/gateway:latest"]})[0]
    assert pinned_images(CONTAINER, container("redis", image="redis")) != []
    assert pinned_images(CONTAINER, container("redis", image="redis:7.4.2-alpine")) == []


# --- published ports ----------------------------------------------------------------


def test_edge_ports_bound_to_an_address_pass() -> None:
    nginx = container("nginx", ports=[port(443, 8443, "127.0.0.1"), port(80, 8080, "127.0.0.1")])
    grafana = container("grafana", ports=[port(3000, 3000, "127.0.0.1")])
    assert published_ports(CONTAINER, nginx) == []
    assert published_ports(CONTAINER, grafana) == []
    assert published_ports(CONTAINER, container("ollama")) == []


@pytest.mark.parametrize("role", ["ollama", "redis", "gateway", "prometheus", "nginx-exporter"])
def test_internal_services_publish_nothing(role: str) -> None:
    (problem,) = published_ports(
        CONTAINER, container(role, ports=[port(11434, 11434, "127.0.0.1")])
    )
    assert "only nginx and Grafana" in problem


def test_edge_may_publish_only_its_own_ports_on_fixed_host_ports() -> None:
    wrong_port = container("nginx", ports=[port(8080, 8080, "127.0.0.1")])
    assert "container port 8080" in published_ports(CONTAINER, wrong_port)[0]
    random_host_port = container("nginx", ports=[port(443, None, "127.0.0.1")])
    assert "random host port" in published_ports(CONTAINER, random_host_port)[0]


@pytest.mark.parametrize("ip", [None, "", "0.0.0.0", "::"])
def test_wildcard_binds_need_the_stack_to_declare_them(ip: str | None) -> None:
    undeclared = container("nginx", ports=[port(443, 443, ip)])
    (problem,) = published_ports(CONTAINER, undeclared)
    assert "binds every host address" in problem
    declared = container(
        "nginx", ports=[port(443, 443, ip)], extra_labels={"llm-stack.wildcard-bind": "true"}
    )
    assert published_ports(CONTAINER, declared) == []


def test_publish_all_and_host_networking_fail() -> None:
    assert (
        "publishAllPorts"
        in published_ports(CONTAINER, container("gateway", publishAllPorts=True))[0]
    )
    assert (
        "host networking" in published_ports(CONTAINER, container("redis", networkMode="host"))[0]
    )


# --- healthcheck and restart --------------------------------------------------------


def test_a_service_with_healthcheck_and_restart_passes() -> None:
    assert health_and_restart(CONTAINER, container("redis")) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"healthcheck": None}, "no healthcheck"),
        ({"healthcheck": {"tests": ["NONE"]}}, "no healthcheck"),
        ({"healthcheck": {"tests": ["curl", "x"]}}, "must be ['CMD'"),
        ({"restart": None}, "restart policy None"),
        ({"restart": "no"}, "restart policy 'no'"),
    ],
)
def test_missing_or_wrong_healthcheck_or_restart_fails(
    change: dict[str, Any], expected: str
) -> None:
    problems = health_and_restart(CONTAINER, container("redis", **change))
    assert any(expected in p for p in problems), problems


def test_one_shot_containers_restart_no_and_need_must_run_false() -> None:
    one_shot = {"llm-stack.one-shot": "true"}
    good = container("model-puller", restart="no", mustRun=False, extra_labels=one_shot)
    assert health_and_restart(CONTAINER, good) == []
    restarting = container(
        "model-puller", restart="unless-stopped", mustRun=False, extra_labels=one_shot
    )
    assert "one-shot" in health_and_restart(CONTAINER, restarting)[0]
    kept_running = container("model-puller", restart="no", extra_labels=one_shot)
    assert "one-shot" in health_and_restart(CONTAINER, kept_running)[0]


def test_no_healthcheck_only_with_a_stated_reason() -> None:
    reason = {"llm-stack.no-healthcheck": "scratch image"}
    assert (
        health_and_restart(
            CONTAINER, container("nginx-exporter", healthcheck=None, extra_labels=reason)
        )
        == []
    )
    empty_reason = {"llm-stack.no-healthcheck": ""}
    assert health_and_restart(
        CONTAINER, container("nginx-exporter", healthcheck=None, extra_labels=empty_reason)
    ) == ["container t-nginx-exporter (nginx-exporter): no healthcheck"]


# --- plain-text secrets -------------------------------------------------------------


def test_strong_secret_values_and_ordinary_variables_pass() -> None:
    props = container(
        "gateway",
        envs=[
            f"GF_SECURITY_ADMIN_PASSWORD={STRONG}",
            f"REDISCLI_AUTH={STRONG}",
            f"GATEWAY_REDIS_URL=redis://:{STRONG}@t-redis:6379/0",
            "GATEWAY_API_KEYS_FILE=/etc/llm-gateway/keys.json",
            "GATEWAY_AUTH_DISABLED=false",
            "GF_AUTH_ANONYMOUS_ENABLED=false",
            "OLLAMA_KEEP_ALIVE=5m",
            # Token counts are not tokens.
            "GATEWAY_TOKENS_PER_MINUTE=20000",
            "GATEWAY_QUOTA_ESTIMATE_TOKENS=256",
        ],
    )
    assert plain_text_secrets(CONTAINER, props) == []


@pytest.mark.parametrize(
    "entry",
    [
        "GF_SECURITY_ADMIN_PASSWORD=admin",
        "REDIS_PASSWORD=changeme",
        "SOME_TOKEN=",
        "GITHUB_TOKEN=abc",
        "HF_TOKEN_VALUE=x",
        "API_KEY=short-key",
        "REDISCLI_AUTH=hunter2",
        "GATEWAY_REDIS_URL=redis://:password@t-redis:6379/0",
        "DATABASE_URL=postgres://app:secret@db/app",
    ],
)
def test_literal_looking_secrets_fail(entry: str) -> None:
    (problem,) = plain_text_secrets(CONTAINER, container("gateway", envs=[entry]))
    name, _, value = entry.partition("=")
    assert name in problem
    # The message names the variable, never echoes its value.
    assert f"={value}" not in problem
    assert repr(value) not in problem


# --- network membership (stack rule) ------------------------------------------------


def networks() -> list[ResourceView]:
    def net(kind: str, internal: bool) -> ResourceView:
        props = {
            "name": f"t-{kind}",
            "internal": internal,
            "labels": [{"label": "llm-stack.network", "value": kind}],
        }
        return ResourceView(NETWORK, kind, props)

    return [net("internal", True), net("edge", False), net("egress", False)]


def joined(role: str, *kinds: str) -> ResourceView:
    return ResourceView(
        CONTAINER, role, container(role, networksAdvanced=[{"name": f"t-{k}"} for k in kinds])
    )


def test_each_role_on_its_own_networks_passes() -> None:
    resources = [
        *networks(),
        joined("ollama", "internal"),
        joined("model-puller", "egress"),
        joined("redis", "internal"),
        joined("gateway", "internal"),
        joined("nginx", "edge", "internal"),
        joined("grafana", "edge", "internal"),
        joined("prometheus", "internal"),
        joined("nginx-exporter", "internal"),
        joined("gpu-exporter", "internal"),
    ]
    assert network_membership(resources) == []


@pytest.mark.parametrize(
    ("role", "kinds", "expected"),
    [
        ("ollama", ("internal", "egress"), "joins the egress network"),
        ("ollama", ("edge",), "joins the edge network"),
        ("redis", ("edge",), "joins the edge network"),
        ("prometheus", ("egress",), "joins the egress network"),
        ("model-puller", ("internal",), "joins the internal network"),
        ("gateway", (), "joins no stack network"),
    ],
)
def test_roles_outside_their_networks_fail(
    role: str, kinds: tuple[str, ...], expected: str
) -> None:
    problems = network_membership([*networks(), joined(role, *kinds)])
    assert any(expected in p for p in problems), problems


def test_internal_roles_need_a_truly_internal_network() -> None:
    leaky = [
        ResourceView(
            NETWORK,
            "internal",
            {
                "name": "t-internal",
                "internal": False,
                "labels": [{"label": "llm-stack.network", "value": "internal"}],
            },
        ),
        joined("redis", "internal"),
    ]
    assert "not internal=True" in network_membership(leaky)[0]


def test_foreign_networks_and_unlabelled_containers_fail() -> None:
    stranger = ResourceView(
        CONTAINER, "x", container("redis", networksAdvanced=[{"name": "bridge"}])
    )
    assert "not a network of this stack" in network_membership([*networks(), stranger])[0]
    anonymous = ResourceView(
        CONTAINER, "y", {"name": "y", "networksAdvanced": [{"name": "t-internal"}]}
    )
    assert "no llm-stack.role label" in network_membership([*networks(), anonymous])[0]


# --- the pulumi-policy wrappers -----------------------------------------------------


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def test_wrapped_policies_report_violations_through_pulumi_policy() -> None:
    built = policies()
    assert {p.name for p in built} == {
        "pinned-images",
        "published-ports",
        "healthcheck-and-restart",
        "no-plain-text-secrets",
        "network-membership",
    }
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in built)
    bad = container("ollama", image="ollama/ollama:latest", ports=[port(11434, 11434, "0.0.0.0")])
    reported: list[str] = []
    for policy in built:
        if isinstance(policy, ResourceValidationPolicy):
            args = ResourceValidationArgs(CONTAINER, bad, "urn:t", "ollama", _options(), None)
            policy.validate(args, lambda message, urn=None: reported.append(message))
    assert any("latest" in m for m in reported)
    assert any("only nginx and Grafana" in m for m in reported)

    (stack_policy,) = [p for p in built if isinstance(p, StackValidationPolicy)]
    resources = [
        PolicyResource(
            v.resource_type, v.props, f"urn:{v.name}", v.name, _options(), None, None, [], {}
        )
        for v in [*networks(), joined("ollama", "internal", "egress")]
    ]
    stack_reported: list[str] = []
    stack_policy.validate(
        StackValidationArgs(resources), lambda message, urn=None: stack_reported.append(message)
    )
    assert any("egress" in m for m in stack_reported)
