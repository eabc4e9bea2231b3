"""llm-gateway: the API gateway of llm-stack (auth, limits, cache, coalescing, metrics)."""

__version__ = "0.1.0"
