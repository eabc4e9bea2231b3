"""The model pull of a cluster's Ollama pods: skip what the volume has, check pins.

Run by the init container of each Ollama pod (a volume per pod) or by the puller Job
(one shared claim), as `sh -c PULL_SCRIPT model-puller <model> <manifest> <digest>...`.
A model whose manifest is on the volume is not pulled again: Ollama's pull always asks
the registry first (`PullModel` fetches the manifest before anything else), so a
registry outage would otherwise keep a rescheduled pod in Init:CrashLoopBackOff with
its models right there. A pinned model (`kubernetes.models.digests`) must be on the
volume with exactly that manifest digest: one that is not is pulled, and a pull that
ends on another digest (the tag moved upstream) fails the pod instead of letting
replicas serve different weights under one name.

The digest is Ollama's own: the sha256 of the manifest file, what `/api/tags` reports
as `digest` and `ollama list` shows the first 12 characters of.
"""

from __future__ import annotations

from typing import Final

from llm_config.model import StackConfig

# Ollama's defaults for a short model name (types/model/name.go).
DEFAULT_HOST: Final = "registry.ollama.ai"
DEFAULT_NAMESPACE: Final = "library"
DEFAULT_TAG: Final = "latest"
UNPINNED: Final = "-"

# Arguments come in threes; no model name is ever parsed by the shell. Pull progress
# goes to a file (long, full of carriage returns); the log keeps one line per model.
PULL_SCRIPT: Final = """\
set -u
manifests="$OLLAMA_MODELS/manifests"
have() {
  [ -f "$manifests/$1" ] || return 1
  [ "$2" = "-" ] && return 0
  [ "$(sha256sum < "$manifests/$1" | cut -d ' ' -f 1)" = "$2" ]
}
server=""
serve() {
  [ -n "$server" ] && return 0
  server=1
  ollama serve >/tmp/serve.log 2>&1 &
  tries=0
  until ollama list >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 120 ]; then
      echo "ollama serve did not answer within 120 s:"; tail -n 20 /tmp/serve.log; exit 1
    fi
    sleep 1
  done
}
while [ "$#" -ge 3 ]; do
  model=$1; manifest=$2; digest=$3; shift 3
  if have "$manifest" "$digest"; then
    echo "$model: on the volume, not pulled"
    continue
  fi
  serve
  echo "pulling $model"
  if ! ollama pull "$model" >/tmp/pull.log 2>&1; then
    echo "pull of $model failed:"; tail -n 20 /tmp/pull.log; exit 1
  fi
  if ! have "$manifest" "$digest"; then
    echo "$model: pulled, but its manifest is not sha256:$digest (did the tag move?)"
    exit 1
  fi
  echo "pulled $model"
done
"""


def manifest_path(model: str) -> str:
    """Where Ollama keeps `model`'s manifest, under $OLLAMA_MODELS/manifests.

    Mirrors `model.ParseName(...).Filepath()`: host/namespace/model/tag, the parts cut
    from the right, defaults filled in.
    """
    rest, tag = model, DEFAULT_TAG
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag = rest.rsplit(":", 1)
    parts = rest.split("/")
    name = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
    host = "/".join(parts[:-2]) if len(parts) >= 3 else DEFAULT_HOST
    host = host.split("://", 1)[-1]
    return f"{host}/{namespace}/{name}/{tag}"


def pull_arguments(config: StackConfig) -> list[str]:
    """`<model> <manifest path> <digest or ->` for each configured model."""
    kube = config.kubernetes
    assert kube is not None
    pins = kube.models.digests
    arguments: list[str] = []
    for model in config.ollama.models:
        arguments += [model, manifest_path(model), pins.get(model, UNPINNED)]
    return arguments


# The Ollama container's postStart hook (`kubernetes.models.warm`): once the server
# answers, one short generation per model loads it. Never fails the container: a
# model that cannot load now is loaded by its first request, as without a warm-up.
WARM_SCRIPT: Final = """\
tries=0
until ollama list >/dev/null 2>&1; do
  tries=$((tries + 1)); [ "$tries" -gt 300 ] && exit 0; sleep 1
done
for model in "$@"; do ollama run "$model" hi >/dev/null 2>&1 || true; done
exit 0
"""
