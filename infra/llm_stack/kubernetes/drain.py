"""Ollama pods drain through the gateway before they stop.

Ollama closes its server at once on SIGTERM (`srvr.Close()`), cutting every stream on
the pod, so a stopping pod first asks the gateway to drain it: no new request is
placed on it, and the ones in flight finish. The Ollama image has no HTTP client, so a
small sidecar from the gateway image does the asking, in its preStop hook:

    llm-gateway drain --url <gateway> --instance <this pod's instance> \
        --until ready --wait --timeout <generation>

`--until ready`: the gateway re-admits the instance by itself once it has seen it down
and answering again, which is what the pod's replacement (same name) does.

The kubelet runs every container's preStop hook at once when a pod is deleted, so
the Ollama container's own preStop waits for the sidecar's marker file on a shared
volume (or the timeout) before Ollama gets its SIGTERM. The sidecar asks with a key of
its own: an admin key made here (random, in the Pulumi state), allowed no model, in a
Secret mounted only into the Ollama pods' sidecar. Draining needs model-aware routing:
with least-conn the gateway places nothing on instances (the balancer does), and a
stopping pod only waits until the balancer's DNS dropped it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from llm_config.api_keys import keys_file_text
from llm_config.model import StackConfig

from llm_stack.kubernetes import names as n
from llm_stack.kubernetes import shutdown
from llm_stack.kubernetes import workload as w
from llm_stack.shared.secrets import DEV_KEY_PREFIX, secret_text

# The drain key's name in the gateway's keys file (in its logs and metrics).
KEY_NAME: Final = "ollama-drain"
KEY_DIR: Final = "/etc/llm-drain"
KEY_KEY: Final = "key"
# Shared by the sidecar and the Ollama container: the sidecar's "drained" marker.
MARKER_DIR: Final = "/drain"
MARKER: Final = f"{MARKER_DIR}/drained"
MARKER_VOLUME: Final = "drain"
CONTAINER: Final = "drain"

# The sidecar idles until its preStop has run; sh is PID 1 of its container, which
# ignores SIGTERM unless it traps it, so it exits at once when stopped.
IDLE_SCRIPT: Final = 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'

# The sidecar's preStop: drain, then tell the Ollama container. A failed drain (no
# gateway answers) still waits until the gateways' DNS dropped this pod.
DRAIN_SCRIPT: Final = """\
set -u
# A hook's output reaches no log; the container's own stdout does.
if [ -w "$LLM_DRAIN_LOG" ]; then exec >>"$LLM_DRAIN_LOG" 2>&1; fi
LLM_GATEWAY_ADMIN_KEY=$(cat "$LLM_DRAIN_KEY_FILE")
export LLM_GATEWAY_ADMIN_KEY
if llm-gateway drain --url "$LLM_DRAIN_GATEWAY_URL" --instance "$LLM_DRAIN_INSTANCE" \
    --until ready --wait --timeout "$LLM_DRAIN_TIMEOUT"; then
  echo "drained $LLM_DRAIN_INSTANCE"
else
  echo "drain of $LLM_DRAIN_INSTANCE failed; stopping after the gateways' DNS delay"
  sleep "$LLM_DRAIN_DNS_SECONDS"
fi
touch "$LLM_DRAIN_MARKER"
"""

# The Ollama container's preStop: wait for the sidecar's marker, at most this long.
WAIT_SCRIPT: Final = """\
waited=0
while [ ! -e "$1" ] && [ "$waited" -lt "$2" ]; do sleep 1; waited=$((waited + 1)); done
"""


def enabled(config: StackConfig) -> bool:
    kube = config.kubernetes
    assert kube is not None
    return kube.drain.enabled and config.gateway.routing == "model-aware"


def with_drain_key(keys_file: str, key: str) -> str:
    """The gateway's keys file with the drain key added: admin (drains are admin
    operations), allowed no model, a small request budget."""
    keys: dict[str, Any] = dict(json.loads(keys_file)["keys"])
    keys[KEY_NAME] = {
        "digest": hashlib.sha256(key.encode()).hexdigest(),
        "admin": True,
        "models": [],
        "requestsPerMinute": 60,
        "maxConcurrent": 2,
    }
    return keys_file_text(keys)


class DrainKey(pulumi.ComponentResource):
    """The drain key and its Secret (mounted into the Ollama pods' sidecar only)."""

    key: pulumi.Output[str]
    secret: k8s.core.v1.Secret

    def __init__(
        self,
        name: str,
        config: StackConfig,
        *,
        namespace: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("llm-stack:kubernetes:DrainKey", name, None, opts)
        names = n.KubeNames.of(config)
        child = pulumi.ResourceOptions(parent=self)
        password = random.RandomPassword("drain-key", length=43, special=False, opts=child)
        self.key = secret_text(password.result.apply(lambda k: DEV_KEY_PREFIX + k))
        self.secret = k8s.core.v1.Secret(
            "drain-key",
            metadata=w.metadata(names, n.OLLAMA, names.object(n.OLLAMA, "drain-key"), namespace),
            type="Opaque",
            string_data={KEY_KEY: self.key},
            opts=child,
        )
        self.register_outputs({})


def sidecar(config: StackConfig, secret_name: pulumi.Input[str]) -> dict[str, Any]:
    """The container that drains its pod's instance when the pod stops."""
    kube = config.kubernetes
    assert kube is not None
    names = n.KubeNames.of(config)
    gateway_url = f"http://{names.fqdn(names.gateway)}:{config.gateway.port}"
    instance = f"$(POD_NAME).{names.fqdn(names.ollama)}:{n.OLLAMA_SERVICE_PORT}"
    key_check = ["/bin/sh", "-c", f"test -s {KEY_DIR}/{KEY_KEY} && command -v llm-gateway"]
    return {
        "name": CONTAINER,
        "image": kube.drain.image or kube.gateway_image,
        "command": ["/bin/sh", "-c", IDLE_SCRIPT],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            # The instance as the gateway names it: host:port of its URL.
            {"name": "LLM_DRAIN_INSTANCE", "value": instance},
            {"name": "LLM_DRAIN_TIMEOUT", "value": str(shutdown.drain_timeout_seconds(config))},
            {"name": "LLM_DRAIN_DNS_SECONDS", "value": str(shutdown.OLLAMA_DNS_SECONDS)},
            {"name": "LLM_DRAIN_MARKER", "value": MARKER},
            # The sidecar's PID 1 (its idle loop) writes to the container log.
            {"name": "LLM_DRAIN_LOG", "value": "/proc/1/fd/1"},
            # Where `llm-gateway drain` finds the gateway, and the key it sends (read
            # into LLM_GATEWAY_ADMIN_KEY by the hook only, never in an argument).
            {"name": "LLM_DRAIN_GATEWAY_URL", "value": gateway_url},
            {"name": "LLM_DRAIN_KEY_FILE", "value": f"{KEY_DIR}/{KEY_KEY}"},
        ],
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", DRAIN_SCRIPT]}}},
        # It idles; what it needs when the pod stops is its key and the CLI.
        "readinessProbe": {"exec": {"command": key_check}, "periodSeconds": 30},
        "livenessProbe": {"exec": {"command": key_check}, "periodSeconds": 60},
        "resources": w.resources("10m", "64Mi", "500m", "256Mi"),
        "volumeMounts": [
            {"name": MARKER_VOLUME, "mountPath": MARKER_DIR},
            {"name": "drain-key", "mountPath": KEY_DIR, "readOnly": True},
        ],
    }


def volumes(secret_name: pulumi.Input[str]) -> list[dict[str, Any]]:
    return [
        w.empty_dir(MARKER_VOLUME, "1Mi"),
        {
            "name": "drain-key",
            "secret": {
                "secretName": secret_name,
                "items": [{"key": KEY_KEY, "path": KEY_KEY}],
                "defaultMode": 0o440,
            },
        },
    ]


def ollama_pre_stop(config: StackConfig) -> dict[str, Any]:
    """The Ollama container's preStop: wait for the drain (or, without one, the DNS)."""
    if not enabled(config):
        # New requests stop arriving once the balancer or the gateways re-resolved.
        return {"exec": {"command": ["sleep", str(shutdown.OLLAMA_DNS_SECONDS)]}}
    limit = shutdown.drain_timeout_seconds(config) + shutdown.OLLAMA_DNS_SECONDS
    return {"exec": {"command": ["/bin/sh", "-c", WAIT_SCRIPT, "wait-drain", MARKER, str(limit)]}}
