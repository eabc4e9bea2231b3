"""The API gateway: an image built from gateway/Dockerfile and R replicas of it.

The replicas live on the internal network only; nginx reaches them by name. Their
environment comes from `gateway_environment` (the one place that decides it); the
Redis URL carries the password and goes in as a secret Output, and the keys file is
uploaded with secret content.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker
import pulumi_docker_build as docker_build
from llm_config import images
from llm_config.model import GatewayConfig, StackConfig

from llm_stack.docker import containers as c
from llm_stack.docker.network import StackNetworks
from llm_stack.gateway_env import SECRET_VARIABLES, gateway_environment
from llm_stack.shared.labels import GATEWAY
from llm_stack.shared.names import KEYS_FILE, StackNames

IMAGE_REPOSITORY = "llm-stack/gateway"
# Healthy within a few 15 s healthchecks of its start (see containers.healthcheck).
WAIT_TIMEOUT_SECONDS = 120

# infra/llm_stack/docker/gateway.py -> the repository root (the build context).
REPO_ROOT = Path(__file__).resolve().parents[3]


def gateway_version(root: Path = REPO_ROOT) -> str:
    """The gateway package's version: the tag of the image built from it."""
    with (root / "gateway" / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def _relative(path: Path) -> str:
    # Relative to the project directory (Pulumi's cwd), so the state does not differ
    # between a laptop and a CI runner that check the repository out elsewhere.
    return os.path.relpath(path)


def health_test(port: int) -> list[str]:
    """Liveness via Python's own HTTP client: the image has no curl."""
    script = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{port}/health', timeout=4)"
    )
    return ["CMD", "python", "-c", script]


def environment_entries(
    config: StackConfig,
    *,
    upstream_url: str,
    instance_urls: list[str],
    redis_url: pulumi.Output[str],
    cache_redis_url: pulumi.Output[str],
    otel_headers: pulumi.Output[str] | None = None,
) -> list[pulumi.Input[str]]:
    """`KEY=value` entries; the credential-carrying ones are secret Outputs."""

    def render(url: str, cache_url: str, headers: str | None) -> dict[str, str]:
        return gateway_environment(
            config,
            upstream_url=upstream_url,
            instance_urls=instance_urls,
            redis_url=url,
            cache_redis_url=cache_url,
            api_keys_file=KEYS_FILE,
            otel_headers=headers,
        )

    # Which variables exist and every plain value are independent of the secrets.
    placeholder = "redis://placeholder:6379/0"
    plain = render(placeholder, placeholder, "placeholder" if otel_headers else None)
    secrets: list[pulumi.Input[str | None]] = [redis_url, cache_redis_url, otel_headers]
    full = pulumi.Output.all(*secrets).apply(lambda v: render(v[0], v[1], v[2]))

    def secret_entry(name: str) -> pulumi.Output[str]:
        return c.secret_env(name, full.apply(lambda env: env[name]))

    return [
        secret_entry(name) if name in SECRET_VARIABLES else f"{name}={plain[name]}"
        for name in sorted(plain)
    ]


@dataclass(frozen=True)
class GatewayServiceArgs:
    names: StackNames
    gateway: GatewayConfig
    # `KEY=value` entries (`environment_entries`); the credential-carrying ones secret.
    environment: Sequence[pulumi.Input[str]]
    # The keys file's JSON text, a secret.
    keys_file: pulumi.Output[str]
    networks: StackNetworks
    # What the replicas need running first (Redis, the Ollama pool).
    depends_on: Sequence[pulumi.Resource]


class GatewayService(pulumi.ComponentResource):
    image: docker_build.Image
    local_image: docker.RemoteImage
    replicas: list[docker.Container]
    # `host:port` of each replica on the internal network.
    addresses: list[str]

    def __init__(
        self, name: str, args: GatewayServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llm-stack:gateway:Service", name, None, opts)
        self._args = args
        self.image, self.local_image = self._images()
        replicas = range(args.gateway.replicas)
        self.replicas = []
        for index in replicas:
            # Each after the one before: a rebuild replaces them one at a time, and
            # the edge retries on the others meanwhile.
            self.replicas.append(self._replica(index, self.replicas[-1:]))
        self.addresses = [f"{args.names.gateway(index)}:{args.gateway.port}" for index in replicas]
        self.register_outputs({"replicas": [r.name for r in self.replicas]})

    def _images(self) -> tuple[docker_build.Image, docker.RemoteImage]:
        image = docker_build.Image(
            "gateway-image",
            context=docker_build.BuildContextArgs(location=_relative(REPO_ROOT)),
            dockerfile=docker_build.DockerfileArgs(
                location=_relative(REPO_ROOT / "gateway" / "Dockerfile")
            ),
            tags=[f"{IMAGE_REPOSITORY}:{gateway_version()}"],
            # The base images pinned in llm_config.images (the Dockerfile's defaults are
            # the same, for a build by hand).
            build_args=dict(images.GATEWAY_BUILD_ARGS),
            push=False,
            load=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Containers take the build's image id, not its tag: a rebuild under the same
        # tag has a new id, which replaces the replicas; the unchanged tag would leave
        # them on the old build. (The provider reads the image back as written, id or
        # tag, so neither diffs by itself.) This finds the loaded build on the host (no
        # pull) and is replaced with each build.
        local_image = docker.RemoteImage(
            "gateway-local-image",
            name=image.ref,
            keep_locally=True,
            triggers={"contextHash": image.context_hash},
            opts=pulumi.ResourceOptions(parent=self),
        )
        return image, local_image

    def _replica(self, index: int, after: list[docker.Container]) -> docker.Container:
        args, gateway = self._args, self._args.gateway
        grace = int(gateway.shutdown_grace_seconds)
        return docker.Container(
            f"gateway-{index}",
            name=args.names.gateway(index),
            image=self.local_image.image_id,
            envs=list(args.environment),
            uploads=[c.upload(KEYS_FILE, pulumi.Output.secret(args.keys_file))],
            memory=gateway.memory_mb,
            # No swap on top (Docker would default it to twice `memory`, a value the
            # provider then reads back and "updates" on every run).
            memory_swap=gateway.memory_mb,
            restart="unless-stopped",
            healthcheck=c.healthcheck(health_test(gateway.port)),
            # Docker's stop timeout outlasts the gateway's own drain of open streams.
            stop_timeout=grace + 5,
            destroy_grace_seconds=grace + 5,
            networks_advanced=c.networks([args.networks.internal]),
            # Created means healthy: the next replica is replaced only then.
            wait=True,
            wait_timeout=WAIT_TIMEOUT_SECONDS,
            labels=c.labels(GATEWAY, args.names.prefix),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*args.depends_on, *after],
                # Fixed names: the old replica stops (draining its streams within the
                # grace) before the new one starts.
                delete_before_replace=True,
            ),
        )
