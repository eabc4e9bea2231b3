"""Small builders shared by the service components: labels, healthchecks, images.

Every container of the stack goes through `container_args`, so the invariants the
policy pack checks (a healthcheck, a restart policy, role labels, explicit networks,
no default bridge) hold by construction rather than by each component remembering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_docker as docker
from llm_stack.components.labels import ONE_SHOT_LABEL, ROLE_LABEL, STACK_LABEL


def pinned_image(resource_name: str, image: str, parent: pulumi.Resource) -> docker.RemoteImage:
    """Pull `image` (already validated as pinned by the config) and keep it on the host.

    `keep_locally` so that `pulumi destroy` does not delete an image other stacks or
    a re-deploy would pull again.
    """
    return docker.RemoteImage(
        resource_name,
        name=image,
        keep_locally=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def healthcheck(
    test: Sequence[str],
    *,
    interval_seconds: int = 15,
    timeout_seconds: int = 5,
    retries: int = 3,
    start_period_seconds: int = 10,
) -> docker.ContainerHealthcheckArgs:
    """A Docker healthcheck; `test` is exec form (`["CMD", ...]` or `["CMD-SHELL", ...]`)."""
    return docker.ContainerHealthcheckArgs(
        tests=list(test),
        interval=f"{interval_seconds}s",
        timeout=f"{timeout_seconds}s",
        retries=retries,
        start_period=f"{start_period_seconds}s",
    )


def labels(
    role: str,
    stack: str,
    extra: Mapping[str, pulumi.Input[str]] | None = None,
    *,
    one_shot: bool = False,
) -> list[docker.ContainerLabelArgs]:
    values: dict[str, pulumi.Input[str]] = {ROLE_LABEL: role, STACK_LABEL: stack, **(extra or {})}
    if one_shot:
        values[ONE_SHOT_LABEL] = "true"
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(values.items())]


def networks(
    attached: Sequence[docker.Network], aliases: Sequence[str] = ()
) -> list[docker.ContainerNetworksAdvancedArgs]:
    """Explicit networks only: a container with none would land on the default bridge."""
    return [
        docker.ContainerNetworksAdvancedArgs(name=net.name, aliases=list(aliases) or None)
        for net in attached
    ]


def volume(
    volume: docker.Volume, path: str, *, read_only: bool = False
) -> docker.ContainerVolumeArgs:
    return docker.ContainerVolumeArgs(
        volume_name=volume.name, container_path=path, read_only=read_only or None
    )


def upload(
    path: str, content: pulumi.Input[str], *, permissions: str = "0644"
) -> docker.ContainerUploadArgs:
    """A file written into the container before it starts (a change replaces the container)."""
    return docker.ContainerUploadArgs(file=path, content=content, permissions=permissions)


def env_list(values: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(values.items())]


def secret_text(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """`value` as a secret Output (typed, which `Output.secret` alone is not for mypy)."""
    result: pulumi.Output[str] = pulumi.Output.secret(value)
    return result


def secret_env(name: str, value: pulumi.Input[str]) -> pulumi.Output[str]:
    """A `NAME=value` env entry whose value is a secret: the whole entry stays secret."""
    return secret_text(pulumi.Output.concat(name, "=", value))
