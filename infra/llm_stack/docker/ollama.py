"""The Ollama pool: a one-shot model puller, then N instances serving from one volume.

Only the puller downloads. It is the single writer of the shared models volume and
the only container on the egress network; it runs `ollama serve` privately, pulls
every configured model and exits. Pulumi waits for it (`attach`) and the instances
are created only after it exited 0, so no instance ever takes traffic without its
models. The instances sit on the internal network alone (no egress, no published
port) and run with OLLAMA_NOPRUNE=1: a start never prunes blobs on the shared volume.

A changed model list or image makes a new puller (its name carries a hash of both); the
running instances keep serving and see the new models on the volume once pulled. A
preview shows the instances as replaced then (their gate label is unknown until the
pull ends); `pulumi up` keeps them, since the label's value does not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
from llm_config.model import OllamaConfig

from llm_stack.docker import containers as c
from llm_stack.docker.network import StackNetworks
from llm_stack.docker.rollout import GatewayAdmin, OllamaHooks
from llm_stack.docker.volumes import StackVolumes
from llm_stack.ollama_env import gpu_environment
from llm_stack.shared.labels import MODEL_PULLER, OLLAMA
from llm_stack.shared.names import OLLAMA_PORT, StackNames

MODELS_DIR = "/root/.ollama"
# Beyond the start period: three healthchecks 30 s apart, and the container's start.
WAIT_MARGIN_SECONDS = 120

# Runs as `sh -c SCRIPT model-puller <model>...`: the models arrive as arguments, so no
# model name is ever parsed by the shell. Pull progress goes to a file (it is long and
# full of carriage returns); the container log keeps one line per model, and the tail
# of the failing pull.
PULL_SCRIPT = """\
set -u
ollama serve >/tmp/serve.log 2>&1 &
tries=0
until ollama list >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -gt 120 ]; then
    echo "ollama serve did not answer within 120 s:"; tail -n 20 /tmp/serve.log; exit 1
  fi
  sleep 1
done
for model in "$@"; do
  echo "pulling $model"
  if ! ollama pull "$model" >/tmp/pull.log 2>&1; then
    echo "pull of $model failed:"; tail -n 20 /tmp/pull.log; exit 1
  fi
  echo "pulled $model"
done
ollama list
"""


def gpu_device(gpu: str) -> str:
    """`gpus` value pinning a container to one GPU (an index or a UUID)."""
    return f"device={gpu}"


def require_pulled(puller_name: str, exit_code: int | None, logs: str | None) -> str:
    """Gate on the puller's result: raising here fails `pulumi up` before the pool exists.

    `exit_code` is unknown during a preview (this never runs then) and known after the
    attached puller exited.
    """
    if exit_code is not None and int(exit_code) != 0:
        tail = "\n".join((logs or "").strip().splitlines()[-20:])
        raise RuntimeError(
            f"model puller {puller_name} exited with code {int(exit_code)}; "
            f"no Ollama instance was started. Last log lines:\n{tail}\n"
            f"(details: docker logs {puller_name})"
        )
    return "true"


@dataclass(frozen=True)
class OllamaPoolArgs:
    names: StackNames
    ollama: OllamaConfig
    # OLLAMA_* variables of every instance (`ollama_environment`), GPU pinning aside.
    environment: Mapping[str, str]
    networks: StackNetworks
    volumes: StackVolumes
    # Drains an instance through the gateway before its replacement (`rollout.py`).
    admin: GatewayAdmin


class OllamaPool(pulumi.ComponentResource):
    puller: docker.Container
    instances: list[docker.Container]
    # `host:port` of each instance on the internal network, for the balancer.
    addresses: list[str]

    def __init__(
        self, name: str, args: OllamaPoolArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llm-stack:ollama:Pool", name, None, opts)
        self._args = args
        image = c.pinned_image("ollama-image", args.ollama.image, self)
        self.puller = self._puller(image)
        puller_name = args.names.model_puller(args.ollama.models, args.ollama.image)
        models_ready = pulumi.Output.all(self.puller.exit_code, self.puller.container_logs).apply(
            lambda result: require_pulled(puller_name, result[0], result[1])
        )
        hooks = OllamaHooks.register(args.admin)
        self.instances = []
        for index in range(args.ollama.instances):
            # Each after the one before: a change replaces them one at a time.
            after = self.instances[-1:] or [self.puller]
            self.instances.append(self._instance(index, image, models_ready, after, hooks))
        self.addresses = [
            f"{args.names.ollama(index)}:{OLLAMA_PORT}" for index in range(args.ollama.instances)
        ]
        self.register_outputs({"instances": [i.name for i in self.instances]})

    def _puller(self, image: docker.RemoteImage) -> docker.Container:
        args, ollama = self._args, self._args.ollama
        return docker.Container(
            "model-puller",
            name=args.names.model_puller(ollama.models, ollama.image),
            image=image.image_id,
            entrypoints=["/bin/sh", "-c", PULL_SCRIPT, "model-puller"],
            command=list(ollama.models),
            # It only downloads: no GPU, even where the host's default runtime is nvidia.
            envs=c.env_list({**gpu_environment(None), "OLLAMA_HOST": f"127.0.0.1:{OLLAMA_PORT}"}),
            volumes=[c.volume(args.volumes.models, MODELS_DIR)],
            networks_advanced=c.networks([args.networks.egress]),
            # Wait for the exit, keep its log, leave the exited container in place.
            attach=True,
            logs=True,
            must_run=False,
            restart="no",
            healthcheck=c.healthcheck(["CMD", "ollama", "list"], start_period_seconds=30),
            labels=c.labels(
                MODEL_PULLER,
                args.names.prefix,
                {"llm-stack.models": ",".join(ollama.models)},
                one_shot=True,
            ),
            # Not delete-before-replace: a new model list makes a new name, so the new
            # puller runs while the instances keep serving from the volume.
            opts=pulumi.ResourceOptions(
                parent=self,
                # A first pull of a large model takes a while on a slow link.
                custom_timeouts=pulumi.CustomTimeouts(create="2h"),
            ),
        )

    def _instance(
        self,
        index: int,
        image: docker.RemoteImage,
        models_ready: pulumi.Output[str],
        after: list[docker.Container],
        hooks: OllamaHooks,
    ) -> docker.Container:
        args, ollama = self._args, self._args.ollama
        gpu = ollama.gpus[index] if ollama.uses_gpus else None
        env = {**gpu_environment(gpu), **args.environment}
        return docker.Container(
            f"ollama-{index}",
            name=args.names.ollama(index),
            image=image.image_id,
            envs=c.env_list(env),
            gpus=gpu_device(gpu) if gpu is not None else None,
            memory=ollama.memory_mb,
            # No swap on top (Docker would default it to twice `memory`, a value the
            # provider then reads back and "updates" on every run).
            memory_swap=ollama.memory_mb,
            restart="unless-stopped",
            # `ollama show` asks the server about the first model: it fails until the
            # server answers and while the model is missing (no curl in this image).
            healthcheck=c.healthcheck(
                ["CMD", "ollama", "show", ollama.models[0]],
                interval_seconds=30,
                timeout_seconds=10,
                start_period_seconds=ollama.start_period_seconds,
            ),
            volumes=[c.volume(args.volumes.models, MODELS_DIR)],
            networks_advanced=c.networks([args.networks.internal]),
            # Created means healthy: the next instance is replaced only then.
            wait=True,
            wait_timeout=ollama.start_period_seconds + WAIT_MARGIN_SECONDS,
            labels=c.labels(
                OLLAMA,
                args.names.prefix,
                {
                    "llm-stack.gpu": gpu if gpu is not None else "cpu",
                    "llm-stack.models-ready": models_ready,
                },
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=after,
                # Fixed names and GPUs: the old container must go before the new one
                # starts, drained first and re-admitted once healthy (`rollout.py`).
                delete_before_replace=True,
                hooks=hooks.binding(),
            ),
        )
