"""Instances for the router's unit tests: state set by hand, no Ollama behind them."""

from __future__ import annotations

from llm_gateway.routing.instances import Instance, Residency, State
from llm_gateway.upstream import Timeouts, Upstream

GB = 1_000_000_000
TIMEOUTS = Timeouts(1, 5, 5, 10)


def instance(
    name: str,
    *loaded: str,
    num_parallel: int = 2,
    max_loaded: int = 3,
    vram_gb: float | None = None,
    sizes: dict[str, float] | None = None,
) -> Instance:
    """An instance that is up with `loaded` models resident and idle."""
    inst = Instance(
        name=name,
        upstream=Upstream(f"http://{name}", TIMEOUTS, 4),
        num_parallel=num_parallel,
        max_loaded=max_loaded,
        vram=int(vram_gb * GB) if vram_gb else None,
        up=True,
    )
    for order, model in enumerate(loaded):
        size = int((sizes or {}).get(model, 0) * GB)
        inst.models[model] = Residency(model, State.LOADED, size=size, last_used=float(order))
    return inst


def busy(inst: Instance, model: str, n: int = 1) -> Instance:
    inst.models[model].in_flight = n
    return inst
