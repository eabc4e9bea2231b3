"""The stack's security invariants as pure functions over resource properties.

Each rule takes what a policy pack sees of a resource (its type token and its input
properties, engine names: `networksAdvanced`, `healthcheck.tests`, numbers as floats)
and returns the violations it finds, one message each; an empty list means compliant.
`pack.py` wraps them in pulumi-policy objects; tests call them directly.

Limits, stated once: during a first preview some inputs are unknown (an image id, a
network name from another resource); pulumi-policy skips a check that reads an
unknown value, and `pulumi up` runs it again with the values known. Policy packs also
receive secret values decrypted (pulumi_policy.deserialize unwraps them), so no rule
can tell a secret Output from a literal: `plain_text_secrets` catches what is
detectable (empty, short, well-known defaults, credentials in URLs that look
literal) and the unit tests, which do see secret markers, check the rest.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from llm_stack.policy.common import SECRET_NAME_RE, ResourceView, image_problem
from llm_stack.shared.labels import (
    ALLOWED_NETWORKS,
    NETWORK_LABEL,
    NO_HEALTHCHECK_LABEL,
    ONE_SHOT_LABEL,
    PUBLISHING_ROLES,
    ROLE_LABEL,
    WILDCARD_BIND_LABEL,
)

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
BUILT_IMAGE = "docker-build:index:Image"

_RESTART_POLICIES = frozenset({"unless-stopped", "always", "on-failure"})
_URL_CREDENTIALS_RE = re.compile(r"^[a-z][a-z0-9+.-]*://(?P<user>[^:/@]*):(?P<password>[^@/]+)@")
_WEAK_VALUES = frozenset(
    {
        "",
        "admin",
        "password",
        "changeme",
        "change-me",
        "secret",
        "redis",
        "grafana",
        "root",
        "test",
        "example",
        "default",
        "none",
        "null",
        "123456",
        "letmein",
    }
)
_MIN_SECRET_LENGTH = 16


# --- helpers over engine-shaped properties ------------------------------------------


def labels_of(props: Mapping[str, Any]) -> dict[str, str]:
    """Container or network labels (a list of {label, value}) as a dict."""
    result: dict[str, str] = {}
    for item in props.get("labels") or []:
        if isinstance(item, Mapping) and "label" in item:
            result[str(item["label"])] = str(item.get("value", ""))
    return result


def role_of(props: Mapping[str, Any]) -> str | None:
    return labels_of(props).get(ROLE_LABEL)


def _describe(props: Mapping[str, Any]) -> str:
    name = props.get("name") or "<unnamed>"
    role = role_of(props)
    return f"container {name}" + (f" ({role})" if role else "")


# --- resource rules -------------------------------------------------------------------


def pinned_images(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No `latest`, no untagged image, wherever an image is named."""
    references: list[str] = []
    if resource_type == REMOTE_IMAGE:
        references.append(str(props.get("name", "")))
    elif resource_type == BUILT_IMAGE:
        tags = props.get("tags") or []
        if not tags:
            return ["a built image without tags is referenced by nothing pinned: tag it"]
        references += [str(t) for t in tags]
    elif resource_type == CONTAINER:
        image = props.get("image")
        if isinstance(image, str):
            references.append(image)
    return [problem for ref in references if (problem := image_problem(ref)) is not None]


def _is_wildcard(ip: object) -> bool:
    if ip in (None, ""):
        return True  # Docker binds an unset host ip to every address
    try:
        return ipaddress.ip_address(str(ip)).is_unspecified
    except ValueError:
        return False


def published_ports(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Only the edge (and Grafana) publish, only their own ports, wildcards only if declared."""
    if resource_type != CONTAINER:
        return []
    what = _describe(props)
    problems: list[str] = []
    if props.get("publishAllPorts"):
        problems.append(f"{what}: publishAllPorts publishes every exposed port")
    if props.get("networkMode") == "host":
        problems.append(f"{what}: host networking bypasses the stack's networks")
    ports = props.get("ports") or []
    if not ports:
        return problems
    role = role_of(props)
    allowed = PUBLISHING_ROLES.get(role or "")
    if allowed is None:
        published = sorted(int(p.get("internal", 0)) for p in ports)
        return [*problems, f"{what}: publishes ports {published}; only nginx and Grafana may"]
    wildcard_declared = labels_of(props).get(WILDCARD_BIND_LABEL) == "true"
    for port in ports:
        internal = int(port.get("internal", 0))
        if internal not in allowed:
            problems.append(
                f"{what}: publishes container port {internal}; allowed {sorted(allowed)}"
            )
        if port.get("external") in (None, 0):
            problems.append(f"{what}: port {internal} is published on a random host port")
        if _is_wildcard(port.get("ip")) and not wildcard_declared:
            problems.append(
                f"{what}: port {internal} binds every host address "
                f"({port.get('ip') or 'no ip'}); bind it to an address, or declare the "
                f"wildcard in the stack config (label {WILDCARD_BIND_LABEL})"
            )
    return problems


def health_and_restart(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every container has a healthcheck and a restart policy (one-shots restart 'no')."""
    if resource_type != CONTAINER:
        return []
    what = _describe(props)
    problems: list[str] = []
    labels = labels_of(props)
    check = props.get("healthcheck") or {}
    tests = [str(t) for t in (check.get("tests") or [])] if isinstance(check, Mapping) else []
    if not tests or tests[0] == "NONE":
        if not labels.get(NO_HEALTHCHECK_LABEL):
            problems.append(f"{what}: no healthcheck")
    elif tests[0] not in ("CMD", "CMD-SHELL") or len(tests) < 2:
        problems.append(f"{what}: healthcheck must be ['CMD', ...] or ['CMD-SHELL', ...]")
    restart = props.get("restart")
    if labels.get(ONE_SHOT_LABEL) == "true":
        if restart != "no" or props.get("mustRun") is not False:
            problems.append(
                f"{what}: a one-shot container runs with restart 'no' and mustRun false"
            )
    elif restart not in _RESTART_POLICIES:
        problems.append(
            f"{what}: restart policy {restart!r}; use one of {sorted(_RESTART_POLICIES)}"
        )
    return problems


def _env_pairs(props: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for entry in props.get("envs") or []:
        if isinstance(entry, str) and "=" in entry:
            name, _, value = entry.partition("=")
            yield name, value


def plain_text_secrets(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Secret-named variables must not hold a literal-looking value (see module doc)."""
    if resource_type != CONTAINER:
        return []
    what = _describe(props)
    problems: list[str] = []
    for name, value in _env_pairs(props):
        upper = name.upper()
        url = _URL_CREDENTIALS_RE.match(value)
        if url is not None:
            password = url.group("password")
            if password.lower() in _WEAK_VALUES or len(password) < _MIN_SECRET_LENGTH:
                problems.append(f"{what}: {name} embeds a literal-looking password in a URL")
            continue
        # *_FILE variables name a file holding the secret, not the secret itself.
        if upper.endswith("_FILE") or not SECRET_NAME_RE.search(upper):
            continue
        if value.lower() in _WEAK_VALUES or value == name or len(value) < _MIN_SECRET_LENGTH:
            problems.append(
                f"{what}: {name} holds a literal-looking secret; pass a secret Output "
                "(pulumi config set --secret ... / RandomPassword)"
            )
    return problems


RESOURCE_RULES: dict[str, Callable[[str, Mapping[str, Any]], list[str]]] = {
    "pinned-images": pinned_images,
    "published-ports": published_ports,
    "healthcheck-and-restart": health_and_restart,
    "no-plain-text-secrets": plain_text_secrets,
}


# --- stack rule: who joins which network ----------------------------------------------


def _network_kinds(resources: Sequence[ResourceView]) -> dict[str, tuple[str | None, bool]]:
    """Docker network name -> (its llm-stack.network label, internal flag)."""
    kinds: dict[str, tuple[str | None, bool]] = {}
    for res in resources:
        if res.resource_type == NETWORK:
            name = str(res.props.get("name") or res.name)
            kinds[name] = (labels_of(res.props).get(NETWORK_LABEL), bool(res.props.get("internal")))
    return kinds


def network_membership(resources: Sequence[ResourceView]) -> list[str]:
    """Each role joins only its networks; internal-only roles only `internal=True` ones."""
    kinds = _network_kinds(resources)
    problems: list[str] = []
    for res in resources:
        if res.resource_type != CONTAINER:
            continue
        what = _describe(res.props)
        role = role_of(res.props)
        if role is None:
            problems.append(f"{what}: no {ROLE_LABEL} label, so its networks cannot be checked")
            continue
        allowed = ALLOWED_NETWORKS.get(role)
        if allowed is None:
            problems.append(f"{what}: unknown role {role!r}")
            continue
        joined = [
            str(n.get("name"))
            for n in (res.props.get("networksAdvanced") or [])
            if isinstance(n, Mapping)
        ]
        mode = res.props.get("networkMode")
        if not joined:
            problems.append(f"{what}: joins no stack network (it would land on {mode or 'bridge'})")
        for network in joined:
            kind, internal = kinds.get(network, (None, False))
            if kind is None:
                problems.append(f"{what}: joins {network!r}, which is not a network of this stack")
            elif kind not in allowed:
                problems.append(
                    f"{what}: joins the {kind} network {network!r}; allowed: {sorted(allowed)}"
                )
            elif allowed == frozenset({"internal"}) and not internal:
                problems.append(f"{what}: network {network!r} is not internal=True")
    return problems
