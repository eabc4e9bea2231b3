"""llm-gateway: the API gateway of llm-stack (auth, limits, cache, coalescing, metrics).

A request's path through the modules, in order:

- `cli.py` -> `app.py`: uvicorn serves `GatewayApp`; proxy paths go straight to their
  endpoint, ops paths (`ops.py`: /health, /ready, /metrics) through FastAPI.
  `services.py` builds the long-lived parts once, from `settings.py`.
- `proxy.py`: the request path itself. `checks.py` (the key, the JSON body, the
  model; keys from `keys.py`), then `plans.py` (the cache plan and the form the
  client wants; keys from `cache/canonical.py`).
- `admission.py`: per-key limits and the cache lookup in one Redis round trip (the
  response cache is READ here); `redis_guard.py` makes Redis a helper that never
  fails a request, `redis_batch.py` sends one loop turn's commands together.
- `flight.py` + `relay.py`: identical requests share one upstream call (coalescing);
  the call goes through `upstream.py` (aiohttp; `http_pool.py`), is relayed chunk by
  chunk, and when complete the entry is WRITTEN (`admission.Admitter.settle`, with
  the slot released in the same trip; lifetimes in `cache/lifetime.py`).
- `replies.py`: what the client gets: a cached entry replayed (`cache/entry.py`, the
  one definition of an entry's layout; `cache/forms.py` converts NDJSON/JSON/SSE),
  the flight followed live, or a stale entry when Ollama fails.
- `cache/semantic_match.py` + `cache/semantic_guards.py`: the semantic cache's one
  decision (cosine similarity at a threshold, and guards for what embeddings miss:
  numbers, units, negations, direction, comparisons, opposites, names).
- `catalog.py`: the models Ollama serves and their digests (part of every cache key).
- `observe.py` + `metrics.py`: one access-log line and the metrics of each request;
  `errors.py`: error bodies in Ollama's or OpenAI's shape; `asgi_io.py`: raw ASGI.
"""

__version__ = "0.1.0"
