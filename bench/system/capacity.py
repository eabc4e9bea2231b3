"""What the simulated GPUs can serve: service times from the emulator's catalogue.

A request of `prompt_tokens` and `num_predict` generated tokens holds its model's slot
for `prompt/prompt_tps + num_predict/decode_tps` simulated seconds, with the GPU to
itself (the catalogue's speeds, `--decode-speed catalog`, which `--ollama-defaults`
sets). Slots of different models on one GPU take turns (llm_emulator.speed), so work
is conserved: an instance serves at most one GPU-second of work per second.

Capacity of a mix of models, `pinned` ones each kept on its own instance (the layout
model-aware routing should reach) and the rest free to go anywhere: the largest
arrival rate at which no instance needs more than one GPU-second per second, i.e.
`min(1 / max(pinned work per instance), instances / total work)` per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llm_emulator.catalog import canonical_name, spec_for


@dataclass(frozen=True)
class Shape:
    """What one request asks of a model."""

    model: str
    prompt_tokens: int  # as the emulator counts them (words + chat framing)
    num_predict: int


def service_seconds(shape: Shape) -> float:
    """Simulated seconds `shape` holds a slot alone on its GPU (prompt, then tokens)."""
    canonical = canonical_name(shape.model)
    if canonical is None:
        raise ValueError(f"{shape.model!r} is not a model name")
    spec = spec_for(canonical)
    if spec.decode_tps <= 0 or spec.prompt_tps <= 0:
        raise ValueError(f"{shape.model}: the catalogue gives it no speeds")
    return shape.prompt_tokens / spec.prompt_tps + shape.num_predict / spec.decode_tps


def mix_capacity(
    mix: Mapping[str, float],
    service: Mapping[str, float],
    instances: int,
    pinned: Mapping[str, int] | None = None,
) -> float:
    """Requests per simulated second the mix can be served at, at most.

    `mix`: model -> share of the requests (summing to 1); `service`: model -> seconds;
    `pinned`: model -> the instance it is kept on (others may go to any instance).
    """
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"the shares of the mix sum to {total}, not 1")
    work = {model: share * service[model] for model, share in mix.items()}
    per_instance = [0.0] * instances
    for model, index in (pinned or {}).items():
        if not 0 <= index < instances:
            raise ValueError(f"{model} is pinned to instance {index} of {instances}")
        per_instance[index] += work[model]
    bounds = [instances / sum(work.values())]
    if max(per_instance) > 0:
        bounds.append(1.0 / max(per_instance))
    return min(bounds)
