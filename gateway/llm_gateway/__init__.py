"""llm-gateway: the API gateway of llm-stack (auth, limits, cache, coalescing, metrics).

A request's path through the modules, in order:

- `cli.py` -> `app.py`: uvicorn serves `GatewayApp` (`http_protocol.py`: its own
  400 in JSON); proxy paths go straight to their endpoint, ops paths (`ops.py`:
  /health, /ready, /metrics) through FastAPI; no redirects, no unsafe paths.
  `services.py` builds the long-lived parts once, from `settings.py`.
- `routes.py`: the Ollama and OpenAI paths served, and the `Kind` of each.
  `request_id.py`: X-Request-ID on every response.
- `proxy.py`: the request path itself. `checks.py` (the key, the JSON body, the
  model; keys from `keys.py`), `keep_alive.py` (the operator's keep_alive range),
  then `plans.py` (the cache plan and the form the client wants; keys from
  `cache/canonical.py`, scoped per key, group or shared); `quotas.py` estimates
  what the request costs in tokens.
- `admission.py`: per-key limits, token quotas (`lua/admit.lua`, settled at the end
  by `lua/settle.lua`) and the cache lookup in one Redis round trip (the
  response cache is READ here; from its own Redis when GATEWAY_CACHE_REDIS_URL is
  set); `redis_guard.py` makes Redis a helper that never fails a request,
  `redis_batch.py` sends one loop turn's commands together.
- `flight.py` + `relay.py`: identical requests share one upstream call (coalescing);
  the call goes through `upstream.py` (aiohttp; `http_pool.py`), is relayed chunk by
  chunk, and when complete and small enough the entry is WRITTEN
  (`admission.Admitter.store`, a command of its own; the slot, tokens and usage are
  settled by `Admitter.settle`; lifetimes in `cache/lifetime.py`). With model-aware
  routing the call first gets a slot from `routing/` (its own map).
- `replies.py`: what the client gets: a cached entry replayed (`cache/entry.py`, the
  one definition of an entry's layout; `cache/forms.py` converts NDJSON/JSON/SSE),
  the flight followed live, or a stale entry when Ollama fails.
- `semantic.py`: the semantic cache, a rephrased question answered from the exact
  cache's entries (its index in Redis: `cache/semantic_index.py`, `lua/semantic_add.lua`).
- `cache/semantic_match.py` + `cache/semantic_guards.py`: the semantic cache's one
  decision (cosine similarity at a threshold, and guards for what embeddings miss:
  numbers, units, negations, direction, comparisons, opposites, names).
- `catalog.py`: the models Ollama serves and their digests (part of every cache key),
  and listings cut to the models a key may use.
- `observe.py` + `metrics.py`: one access-log line and the metrics of each request;
  `tracing.py`: OpenTelemetry spans, a no-op step when tracing is off;
  `errors.py`: error bodies in Ollama's or OpenAI's shape; `asgi_io.py`: raw ASGI.
- `admin.py`: the admin endpoints (queue, usage, draining Ollama instances);
  `drain_cli.py`: `llm-gateway drain`, a client of those endpoints; `usage_report.py` reads
  usage back (also `llm-gateway usage`); `openapi.py`: the proxy routes' OpenAPI.

Shared by all of the above: `vocabulary.py`, the request vocabulary (`Kind`, `Form`,
the priority classes, `normalize_model`, `now_ms`), which imports nothing of the
gateway. For other packages: `contract.py` (a key's prefix, minting and digest, the
`GATEWAY_*` names), standard library only, the one module `llm_stack` may import.
"""

__version__ = "0.1.0"
