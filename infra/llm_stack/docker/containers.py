"""Small builders shared by the service components: labels, healthchecks, images.

They keep the containers uniform; what the policy pack requires of every container (a
healthcheck, a restart policy, role labels, explicit networks) is checked on the whole
resource graph, by the pack and by tests/infra, not assumed from these helpers.

Values are written the way the docker provider reads them back (healthcheck durations
in Go's form, see `go_duration`): the provider stores what it reads back after creating
a container, so an input in any other form differs from the state on every `pulumi up`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_docker as docker

from llm_stack.shared.labels import ONE_SHOT_LABEL, ROLE_LABEL, STACK_LABEL
from llm_stack.shared.secrets import secret_text


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


def go_duration(seconds: int) -> str:
    """`seconds` as Go's `time.Duration.String()` writes it (`120` -> `2m0s`).

    The provider reads healthcheck durations back with `Duration.String()`; an input in
    any other form (`120s`) never matches the state and is "updated" on every run.
    """
    if seconds < 0:
        raise ValueError(f"a healthcheck duration cannot be negative: {seconds}")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


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
        interval=go_duration(interval_seconds),
        timeout=go_duration(timeout_seconds),
        retries=retries,
        start_period=go_duration(start_period_seconds),
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
    """A file written into the container before it starts (a change replaces the container).

    It is owned by root:root (the provider's tar header sets no owner): a secret that a
    non-root process must read needs group root (gid 0) and a mode like `0440`.
    """
    return docker.ContainerUploadArgs(file=path, content=content, permissions=permissions)


def env_list(values: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(values.items())]


def secret_env(name: str, value: pulumi.Input[str]) -> pulumi.Output[str]:
    """A `NAME=value` env entry whose value is a secret: the whole entry stays secret."""
    return secret_text(pulumi.Output.concat(name, "=", value))
