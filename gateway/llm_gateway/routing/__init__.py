"""Model-aware routing: which Ollama instance serves a request, and who waits or is shed.

- `instances.py`: what the router believes about each instance (models resident, this
  gateway's requests in flight, health), kept true by polling `/api/ps`.
- `placement.py`: the pure choice of an instance for one request for one model.
- `fair_queue.py`: the waiting requests, by priority class, weighted fair per key.
- `dispatcher.py`: admission (queue, estimates, shedding with Retry-After), dispatch
  in fair order whenever a slot frees or a load becomes possible, load patience.
- `runner_options.py`: the request options that would force a model reload, removed.

With `GATEWAY_ROUTING=upstream` none of this runs: every request goes to
`GATEWAY_UPSTREAM_URL` (the nginx least_conn balancer) as it comes.
"""
