"""Model-aware routing: which Ollama instance serves a request, and who waits or is shed.

- `instances.py`: what the router believes about each instance (models resident, this
  gateway's requests in flight, health), kept true by polling `/api/ps`.
- `placement.py`: the pure choice of an instance for one request for one model, each
  candidate ranked (`_ready_rank`, `_load_rank`, prefix affinity within a load bound),
  with the reason for the log.
- `prefix.py`: prefix affinity: a prompt's chained block hashes, and per instance the
  blocks it was sent (an estimate of its KV and prompt caches).
- `affinity_step.py`: prefix affinity's part in the dispatcher: what placement is
  given, whether a request waits for its prefix's busy holder and when the freed slot
  is its own, what a dispatch and a first byte teach the estimate.
- `holds.py`: a request whose prefix's holder is busy waits for it only when a slot
  there is expected to free sooner than the prefill it would pay elsewhere (the
  prefill speed learnt from answers), and no longer than that.
- `fair_queue.py`: the waiting requests, by priority class, weighted fair per key.
- `dispatcher.py`: `Dispatcher`: acquire (queue, admit or shed), pump and dispatch in
  fair order whenever a slot frees or a load becomes possible, release; each decision
  logged at debug level.
- `grant.py`: the `Ticket` a request asks with and the `Grant` of a slot it holds.
- `shed.py`: `Shed`, the gateway's own refusal (503 + Retry-After), its messages, and
  `Shedder` (takes requests out of the queue, counts and narrates each refusal, culls
  the queue of those that can no longer start in time).
- `estimates.py`: measured service and load times, arrival rates, the wait estimate,
  admission and the cull predicate: pure functions of (stats, queue view, now).
- `waits.py`: `Waits`, a queued request's wait estimate from the router's live state
  (its place in line, its model's stats, the slots serving it now).
- `fairness.py`: which replica's waiting request takes a freed slot (cross-replica).
- `patience.py`: load patience: an instance reserved for a model loaded nowhere.
- `drains.py`: instances an admin drained (nothing new placed there), shared between
  replicas through Redis; an until=ready drain ends when the instance comes back.
- `report.py`: the admin snapshot, the per-instance gauges, the joined /api/ps.
- `peers.py`: in-flight counts and queue heads shared between replicas through Redis.
- `clock.py`: the router's time, injected (`SystemClock`; `ManualClock` for tests).
- `runner_options.py`: the request options that would force a model reload, removed.

With `GATEWAY_ROUTING=upstream` none of this runs: every request goes to
`GATEWAY_UPSTREAM_URL` (the nginx least_conn balancer) as it comes.
"""
