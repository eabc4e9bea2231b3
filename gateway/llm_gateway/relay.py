"""Launching flights: the upstream call of a generation request, run in the flight's task.

The task relays the response chunk by chunk to the flight's followers, counts
tokens, and ends the request's Redis side in one round trip (store the entry if it
is complete, free the concurrency slot of the request that launched it) before the
followers' responses end.
"""

from __future__ import annotations

import asyncio
import time

from llm_gateway.admission import Admitter, Lease
from llm_gateway.cache.canonical import Kind
from llm_gateway.cache.completeness import is_complete, usage_of
from llm_gateway.cache.entry import Form
from llm_gateway.cache.lifetime import EntryLifetime
from llm_gateway.errors import error_body
from llm_gateway.flight import Flight, FlightRegistry
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.plans import CachePlan, Wanted
from llm_gateway.upstream import Upstream, UpstreamFailure


def now_ms() -> int:
    return int(time.time() * 1000)


def midstream_error(form: Form, message: str) -> bytes:
    """How Ollama ends a stream that failed after it started (status already 200)."""
    if form is Form.SSE:
        return b"data: " + error_body(502, message, openai=True) + b"\n\n"
    return error_body(502, message, openai=False) + b"\n"


class Relay:
    def __init__(
        self,
        upstream: Upstream,
        admitter: Admitter,
        lifetime: EntryLifetime,
        flights: FlightRegistry,
        metrics: GatewayMetrics,
    ) -> None:
        self._upstream = upstream
        self._admitter = admitter
        self._lifetime = lifetime
        self._flights = flights
        self._metrics = metrics

    def launch(
        self,
        path: str,
        kind: Kind,
        body: bytes,
        headers: dict[str, str],
        plan: CachePlan,
        wanted: Wanted,
        model_label: str,
        lease: Lease | None,
    ) -> Flight:
        """A new flight, registered for coalescing, its upstream call already under way."""
        started = time.perf_counter()
        flight = Flight(plan.key, wanted.form, wanted.include_usage)

        async def run(flight: Flight) -> None:
            settled = False
            try:
                await self._call(
                    flight, path, body, headers, started, kind, plan, model_label, lease
                )
                settled = True
            finally:
                if not settled and lease is not None:
                    # Cancelled: free the slot without holding up the cancellation.
                    asyncio.get_running_loop().create_task(self._admitter.settle(lease))

        self._flights.add(flight)
        flight.launch(run)
        return flight

    async def _call(
        self,
        flight: Flight,
        path: str,
        body: bytes,
        headers: dict[str, str],
        started: float,
        kind: Kind,
        plan: CachePlan,
        model_label: str,
        lease: Lease | None,
    ) -> None:
        metrics, form = self._metrics, flight.form
        try:
            async with self._upstream.request("POST", path, body, headers) as response:
                flight.started(response.status, response.content_type)
                live = form is not Form.JSON
                async for chunk in response.chunks():
                    flight.publish(chunk)
                    if live:
                        # Let followers forward it now, before this task reads on or does
                        # its end-of-stream work: the first byte is what clients wait for.
                        await asyncio.sleep(0)
        except UpstreamFailure as failure:
            metrics.upstream_errors.labels(failure.reason).inc()
            flight.upstream_seconds = time.perf_counter() - started
            if flight.status is None:
                flight.fail(failure)
            else:
                flight.failure = failure
                if form is not Form.JSON:
                    flight.publish(midstream_error(form, failure.message))
                flight.finish(False)
            await self._admitter.settle(lease)
            return
        flight.upstream_seconds = time.perf_counter() - started
        content = flight.body
        status = response.status
        if status >= 500:
            metrics.upstream_errors.labels("status").inc()
        complete = is_complete(kind, form, status, content)
        if complete:
            self._count_tokens(flight, kind, content, model_label)
        entry = None
        if complete and plan.key is not None and plan.store:
            entry = self._lifetime.record(plan.key, form, content, now_ms())
        # Store before the followers' responses end: a client that asks again right
        # after its answer, through any replica, finds the entry (read-your-writes).
        await self._admitter.settle(lease, entry)
        flight.finish(complete)

    def _count_tokens(self, flight: Flight, kind: Kind, content: bytes, model: str) -> None:
        usage = flight.usage = usage_of(kind, flight.form, content)
        if usage is None:
            return
        metrics = self._metrics
        metrics.tokens_generated.labels(model).inc(usage.generated_tokens)
        metrics.prompt_tokens.labels(model).inc(usage.prompt_tokens)
        if usage.generation_seconds > 0 and usage.generated_tokens:
            speed = usage.generated_tokens / usage.generation_seconds
            metrics.tokens_per_second.labels(model).observe(speed)
