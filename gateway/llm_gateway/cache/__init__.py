"""The response cache: its keys, its entries and their lifetimes, read and written in Redis.

- `canonical.py`: cache keys, a versioned SHA-256 of everything that changes an answer.
- `entry.py`: the one definition of an entry's layout (and the Lua expressions that read
  it inside `lua/admit.lua` and `lua/settle.lua`).
- `lifetime.py`: fresh for the TTL, then kept for the stale window.
- `forms.py`: a complete answer converted between NDJSON, one JSON object and SSE.
- `completeness.py`: whether an answer is complete and worth storing, and its tokens.
- `semantic_match.py`: the semantic cache's one decision: is a stored question the
  request's question?
- `semantic_guards.py`: what sentence embeddings do not see; each guard refuses a hit.
- `semantic_index.py`: the semantic index in the cache's Redis, shared by replicas.
- `semantic_scope.py`: what a semantic hit may differ in (the last user message only).

The cache is read by `admission.py` and written by `relay.py` (through
`admission.Admitter.settle`); the request vocabulary (`Kind`, `Form`) is
`llm_gateway.vocabulary`.
"""
