"""The request options that make Ollama reload a model, removed from requests.

Ollama keeps one runner per model with the options it was loaded with; a request
whose runner options differ (`needsReload` in server/sched.go) unloads and reloads
the model, so two clients with different `num_ctx` thrash it (ollama issues 8903,
10948), each reload seconds to tens of seconds of nobody being served. The OpenAI
endpoints cannot even set these options, so /v1 clients always get the server's
defaults. Removing them from native requests gives every model one runner shape:
what the operator configured for each Ollama (OLLAMA_CONTEXT_LENGTH, from the stack
config's `ollama.contextLength`). `GATEWAY_RUNNER_OPTIONS=pass` keeps them.
"""

from __future__ import annotations

from typing import Any

# server/sched.go needsReload compares these (api.Runner options).
RUNNER_OPTIONS = frozenset(
    {"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread"}
)


def strip_runner_options(data: dict[str, Any]) -> list[str]:
    """Remove the runner options from `data["options"]` in place; the names removed."""
    options = data.get("options")
    if not isinstance(options, dict):
        return []
    removed = sorted(name for name in options if name in RUNNER_OPTIONS)
    for name in removed:
        del options[name]
    return removed
