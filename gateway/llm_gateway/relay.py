"""Launching flights: the upstream call of a generation request, run in the flight's task.

The task gets a slot (model-aware routing: from the dispatcher, maybe after waiting
in its fair queue; otherwise the one upstream at once), relays the response chunk by
chunk to the flight's followers, counts tokens, and ends the request's Redis side in
one round trip (store the entry if it is complete, free the concurrency slot of the
request that launched it) before the followers' responses end.

With model-aware routing, a request that fails before any byte reached a client
(connection refused or reset, Ollama's 503 "server busy") is sent once more, to
another instance.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from llm_gateway.admission import Admitter, Lease
from llm_gateway.cache.completeness import is_complete, usage_of
from llm_gateway.cache.lifetime import EntryLifetime
from llm_gateway.errors import error_body
from llm_gateway.flight import Flight, FlightRegistry
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.plans import CachePlan, Wanted
from llm_gateway.quotas import Charge, Estimate, UsageTarget, partial_completion
from llm_gateway.routing.dispatcher import Dispatcher
from llm_gateway.routing.grant import Grant, Ticket
from llm_gateway.routing.shed import Shed
from llm_gateway.tracing import NO_TRACING, OPERATIONS, Span, Steps, fail
from llm_gateway.upstream import Upstream, UpstreamFailure, UpstreamResponse
from llm_gateway.vocabulary import Form, Kind, now_ms

# Failures before the answer's head that mean the instance is not there (or not HTTP).
_DOWN = frozenset({"connect", "protocol", "tls"})


def midstream_error(form: Form, message: str) -> bytes:
    """How Ollama ends a stream that failed after it started (status already 200)."""
    if form is Form.SSE:
        return b"data: " + error_body(502, message, openai=True) + b"\n\n"
    return error_body(502, message, openai=False) + b"\n"


@dataclass(frozen=True, slots=True)
class Outbound:
    """One generation request as it goes upstream."""

    path: str
    kind: Kind
    body: bytes
    headers: dict[str, str]
    plan: CachePlan
    wanted: Wanted
    model_label: str
    # The launching request's concurrency slot (freed with the store, in one trip).
    lease: Lease | None
    # For the dispatcher (model-aware routing); None: straight to the upstream.
    ticket: Ticket | None = None
    # The launching request's usage target, token charge and estimate (settled here).
    usage: UsageTarget | None = None
    charge: Charge | None = None
    estimate: Estimate | None = None


def operation_of(kind: Kind) -> str | None:
    return OPERATIONS.get(kind.value.replace("-", "_"))


def _traced_answer(span: Span, flight: Flight, status: int, kind: Kind) -> None:
    """What the upstream's answer says, on its CLIENT span (recorded spans only)."""
    if not span.is_recording():
        return
    span.set_attribute("http.response.status_code", status)
    usage = usage_of(kind, flight.form, flight.body) if status == 200 else None
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.generated_tokens)
    if status >= 500:
        fail(span, f"upstream answered {status}")


class Relay:
    def __init__(
        self,
        upstream: Upstream,
        dispatcher: Dispatcher | None,
        admitter: Admitter,
        lifetime: EntryLifetime,
        flights: FlightRegistry,
        metrics: GatewayMetrics,
        tracing: Steps = NO_TRACING,
        max_entry_bytes: int | None = None,
    ) -> None:
        self._upstream = upstream
        self._max_entry_bytes = max_entry_bytes
        self._tracing = tracing
        self._dispatcher = dispatcher
        self._admitter = admitter
        self._lifetime = lifetime
        self._flights = flights
        self._metrics = metrics

    def launch(self, out: Outbound) -> Flight:
        """A new flight, registered for coalescing, its upstream call under way."""
        flight = Flight(
            out.plan.key, out.wanted.form, out.wanted.include_usage, self._max_entry_bytes
        )

        async def run(flight: Flight) -> None:
            try:
                await self._call(flight, out)
            finally:
                if not flight.settled:
                    # Cancelled (every client gone), or failed on something unforeseen:
                    # the slot is freed and what was used settled all the same, without
                    # holding up the cancellation.
                    asyncio.get_running_loop().create_task(self._settle(flight, out, failed=True))

        self._flights.add(flight)
        flight.launch(run)
        return flight

    async def _call(self, flight: Flight, out: Outbound) -> None:
        started = time.perf_counter()
        try:
            if self._dispatcher is None or out.ticket is None:
                status = await self._direct(flight, out)
            else:
                status = await self._dispatched(flight, out, self._dispatcher, out.ticket)
        except Shed as shed:
            flight.fail(shed)
            await self._settle(flight, out, failed=True)
            return
        except UpstreamFailure as failure:
            self._metrics.upstream_errors.labels(failure.reason).inc()
            flight.upstream_seconds = time.perf_counter() - started
            if flight.status is None:
                flight.fail(failure)
            else:
                flight.failure = failure
                if flight.form is not Form.JSON:
                    flight.publish(midstream_error(flight.form, failure.message))
                flight.finish(False)
            await self._settle(flight, out, failed=True)
            return
        flight.upstream_seconds = time.perf_counter() - started
        await self._land(flight, out, status)

    async def _direct(self, flight: Flight, out: Outbound) -> int:
        upstream = self._upstream
        headers = dict(out.headers)  # the span's context goes into the copy
        with self._tracing.upstream(
            operation_of(out.kind), out.model_label, upstream.authority, headers
        ) as span:
            async with upstream.request("POST", out.path, out.body, headers) as r:
                status = await self._relay(flight, r)
            _traced_answer(span, flight, status, out.kind)
            return status

    async def _relay(self, flight: Flight, response: UpstreamResponse) -> int:
        flight.started(response.status, response.content_type)
        live = flight.form is not Form.JSON
        async for chunk in response.chunks():
            flight.publish(chunk)
            if flight.oversized:
                await flight.room()  # read no faster than the followers send
            elif live:
                # Let followers forward it now, before this task reads on or does its
                # end-of-stream work: the first byte is what clients wait for.
                await asyncio.sleep(0)
        return response.status

    async def _dispatched(
        self, flight: Flight, out: Outbound, dispatcher: Dispatcher, ticket: Ticket
    ) -> int:
        exclude: frozenset[str] = frozenset()
        lost = False
        for attempt in (1, 2):
            asked = time.perf_counter()
            with self._tracing.step(
                "queued", **{"gen_ai.request.model": ticket.model, "llm.priority": ticket.priority}
            ) as span:
                grant = await dispatcher.acquire(ticket, exclude, lost)
                span.set_attribute("llm.instance", grant.instance.name)
            flight.queued_seconds += time.perf_counter() - asked
            outcome = await self._attempt(flight, out, grant, last=attempt == 2)
            if isinstance(outcome, int):
                return outcome
            self._metrics.upstream_retries.labels(outcome).inc()
            exclude = frozenset({grant.instance.name})
            lost = outcome in _DOWN
        raise AssertionError("the last attempt returns or raises")

    async def _attempt(self, flight: Flight, out: Outbound, grant: Grant, last: bool) -> str | int:
        """The status relayed, or the reason to send the request again elsewhere."""
        failure: str | None = None
        headers = dict(out.headers)  # the span's context goes into the copy
        try:
            with self._tracing.upstream(
                operation_of(out.kind), out.model_label, grant.instance.name, headers
            ) as span:
                span.set_attribute("llm.instance", grant.instance.name)
                async with grant.upstream.request("POST", out.path, out.body, headers) as r:
                    if r.status == 503 and not last:
                        # Ollama's "server busy, please try again": nothing reached a client.
                        await r.read()
                        failure = "busy"
                        return "busy"
                    grant.answered()
                    status = await self._relay(flight, r)
                _traced_answer(span, flight, status, out.kind)
                return status
        except UpstreamFailure as exc:
            before_any_byte = flight.status is None
            if before_any_byte and exc.reason in _DOWN:
                failure = "down"
                if not last:
                    return exc.reason
            raise
        finally:
            grant.release(failure)

    async def _land(self, flight: Flight, out: Outbound, status: int) -> None:
        content = flight.body
        if status >= 500:
            self._metrics.upstream_errors.labels("status").inc()
        complete = is_complete(out.kind, flight.form, status, content)
        if complete:
            flight.usage = usage_of(out.kind, flight.form, content)
            self._observe_speed(flight, out.model_label)
        settled = self._settle(flight, out, failed=status >= 400)
        if complete and out.plan.key is not None and out.plan.store and not flight.oversized:
            tokens = flight.usage.total if flight.usage is not None else 0
            entry = self._lifetime.record(out.plan.key, flight.form, content, now_ms(), tokens)
            # Store before the followers' responses end: a client that asks again right
            # after its answer, through any replica, finds the entry (read-your-writes).
            # Two commands, sent together (one trip when the cache shares the Redis).
            await asyncio.gather(self._admitter.store(*entry), settled)
        else:
            await settled
        flight.finish(complete)

    async def _settle(self, flight: Flight, out: Outbound, failed: bool) -> None:
        """The launching request's Redis side, in one trip: its slot, its tokens (what
        Ollama reported, or what a cut stream had produced) and its usage. Once."""
        if flight.settled:
            return
        flight.settled = True
        prompt, completion = self._tokens_used(flight, out)
        if prompt or completion:
            key = out.usage.key_name if out.usage is not None else "-"
            self._metrics.key_tokens.labels(key, out.model_label, "prompt").inc(prompt)
            self._metrics.key_tokens.labels(key, out.model_label, "completion").inc(completion)
            self._metrics.prompt_tokens.labels(out.model_label).inc(prompt)
            self._metrics.tokens_generated.labels(out.model_label).inc(completion)
        counts = {
            "requests": 1,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "errors": int(failed),
            "queued_ms": round(flight.queued_seconds * 1000),
        }
        await self._admitter.settle(
            out.lease,
            charge=out.charge,
            tokens=prompt + completion,
            usage=out.usage,
            counts=counts,
            now_ms=now_ms(),
        )

    def _tokens_used(self, flight: Flight, out: Outbound) -> tuple[int, int]:
        usage = flight.usage
        if usage is not None and (usage.prompt_tokens or usage.generated_tokens):
            return usage.prompt_tokens, usage.generated_tokens
        if flight.oversized and flight.status == 200 and out.estimate is not None:
            # Too big to hold whole: what Ollama reported went by unread; the estimate
            # admission charged stands.
            return out.estimate.prompt, out.estimate.completion
        # Only a 200 carries tokens: an error page in any form counts none.
        completion = partial_completion(flight.form, flight.body) if flight.status == 200 else 0
        if not completion:
            return 0, 0  # nothing came back: Ollama did no work worth counting
        prompt = out.estimate.prompt if out.estimate is not None else 0
        return prompt, completion

    def _observe_speed(self, flight: Flight, model: str) -> None:
        usage = flight.usage
        if usage is not None and usage.generation_seconds > 0 and usage.generated_tokens:
            speed = usage.generated_tokens / usage.generation_seconds
            self._metrics.tokens_per_second.labels(model).observe(speed)
