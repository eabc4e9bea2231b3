"""What every Ollama instance of a stack runs with, decided in one place for every platform.

The scheduler settings here are also what the model-aware router assumes of each
instance (`gateway_env.py` passes num_parallel and max_loaded_models on), so the
two never disagree.
"""

from __future__ import annotations

from llm_config.model import StackConfig

from llm_stack.shared.names import OLLAMA_PORT


def ollama_environment(config: StackConfig) -> dict[str, str]:
    """`OLLAMA_*` variables of a serving instance (GPU pinning is the platform's)."""
    ollama = config.ollama
    env = {
        "OLLAMA_HOST": f"0.0.0.0:{OLLAMA_PORT}",
        "OLLAMA_KEEP_ALIVE": ollama.keep_alive,
        "OLLAMA_NUM_PARALLEL": str(ollama.num_parallel),
        "OLLAMA_MAX_QUEUE": str(ollama.max_queue),
        "OLLAMA_MAX_LOADED_MODELS": str(ollama.max_loaded_models),
        # The puller owns the model store; a serving instance must never prune it.
        "OLLAMA_NOPRUNE": "1",
        # No remote inference or web search through ollama.com (envconfig, v0.32): a
        # `*-cloud` model name must never send a prompt off the host.
        "OLLAMA_NO_CLOUD": "1",
    }
    if ollama.context_length is not None:
        # The one runner shape of every model (the gateway strips num_ctx & co.).
        env["OLLAMA_CONTEXT_LENGTH"] = str(ollama.context_length)
    return env


def gpu_environment(gpu: str | None) -> dict[str, str]:
    """The NVIDIA variables that pin a container to `gpu`, whatever the host's runtime.

    The image sets NVIDIA_VISIBLE_DEVICES=all: on a host whose default runtime is nvidia
    that alone exposes every GPU, next to the `gpus` device request. A CPU-only
    instance sees none.
    """
    return {"NVIDIA_VISIBLE_DEVICES": gpu if gpu is not None else "void"}
