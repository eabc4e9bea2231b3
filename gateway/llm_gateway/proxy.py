"""The request path: auth → body → limits + cache lookup → coalesced upstream call.

Each proxy route is a small ASGI app (`ProxyEndpoint`) over one shared `Proxy`. The
pieces live next door: `checks` (key, body, model), `plans` (cache plan, wanted
form), `admission` (limits and lookup in one Redis trip), `relay` (the upstream call
in its flight), `replies` (what the client gets back).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import orjson

from llm_gateway.admission import LIMIT_LABELS, Admission, Admitter, Lease, Limits, Verdict
from llm_gateway.asgi_io import (
    ClientGone,
    Receive,
    Reply,
    Scope,
    Send,
    StreamCut,
    cancel_on_disconnect,
    header_map,
    read_body,
)
from llm_gateway.cache.canonical import is_load_only
from llm_gateway.cache.entry import Entry
from llm_gateway.catalog import ModelCatalog, visible_models
from llm_gateway.checks import Gatekeeper, ticket_for
from llm_gateway.errors import GatewayError, error_body
from llm_gateway.flight import Flight, FlightRegistry
from llm_gateway.keep_alive import KeepAlivePolicy
from llm_gateway.keys import ApiKey
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.observe import Recorder, RequestRecord, request_id_from
from llm_gateway.plans import NO_CACHE, CachePlan, Wanted, cache_plan, wanted_form
from llm_gateway.quotas import Charge, Estimate, UsageTarget, estimate, utc_day
from llm_gateway.redis_guard import Unavailable
from llm_gateway.relay import Outbound, Relay
from llm_gateway.replies import failure_error, follow, replay
from llm_gateway.request_id import SCOPE_KEY
from llm_gateway.routes import ProxyRoute
from llm_gateway.routing.dispatcher import Dispatcher
from llm_gateway.routing.grant import Ticket
from llm_gateway.routing.prefix import opens_conversation, prompt_blocks, rendered
from llm_gateway.routing.report import joined_ps
from llm_gateway.routing.runner_options import strip_runner_options
from llm_gateway.semantic import Lookup, SemanticCache, SemanticHit
from llm_gateway.settings import Settings
from llm_gateway.tracing import NO_TRACING, Steps, finish_request
from llm_gateway.upstream import Upstream, UpstreamFailure
from llm_gateway.vocabulary import Kind, now_ms

log = logging.getLogger("llm_gateway")


@dataclass(slots=True)
class Call:
    """One request on its way through the proxy."""

    route: ProxyRoute
    scope: Scope
    receive: Receive
    send: Send
    headers: dict[str, str]
    record: RequestRecord
    reply_headers: dict[str, str]
    body: bytes = b""
    data: dict[str, Any] = field(default_factory=dict)
    limits: Limits | None = None
    ticket: Ticket | None = None
    # Generation requests: where usage is counted, and the tokens they may cost.
    usage: UsageTarget | None = None
    estimate: Estimate | None = None
    api_key: ApiKey | None = None
    # Pass-through with a parameter: the upstream path built from it (else route.path).
    upstream_path: str | None = None

    async def reply(self, reply: Reply) -> None:
        """Send `reply`, noting its status and when its first byte left."""
        self.record.status = reply.status
        reply.on_first_byte = self.record.mark_first_byte
        await reply.send_to(self.send)


class Proxy:
    def __init__(
        self,
        settings: Settings,
        gatekeeper: Gatekeeper,
        upstream: Upstream,
        admitter: Admitter,
        relay: Relay,
        dispatcher: Dispatcher | None,
        catalog: ModelCatalog,
        flights: FlightRegistry,
        recorder: Recorder,
        metrics: GatewayMetrics,
        tracing: Steps = NO_TRACING,
        semantic: SemanticCache | None = None,
    ) -> None:
        self.settings = settings
        self.gatekeeper = gatekeeper
        self.upstream = upstream
        self.admitter = admitter
        self.relay = relay
        self.dispatcher = dispatcher
        self.catalog = catalog
        self.flights = flights
        self.recorder = recorder
        self.metrics = metrics
        self.tracing = tracing
        self.keep_alive = KeepAlivePolicy(
            settings.keep_alive_min_seconds, settings.keep_alive_max_seconds
        )
        self.semantic = semantic

    async def handle(self, route: ProxyRoute, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        request_id = scope.get(SCOPE_KEY) or request_id_from(headers.get("x-request-id"))
        record = self.recorder.start(request_id, scope["method"], scope["path"], route.endpoint)
        reply_headers = {"X-Request-ID": request_id}
        call = Call(route, scope, receive, send, headers, record, reply_headers)
        with self.tracing.request(scope["method"], scope["path"], route.endpoint, headers) as span:
            await self._answer(call)
            if span.is_recording():
                finish_request(
                    span,
                    record.status,
                    {
                        "gen_ai.request.model": call.data.get("model") or None,
                        "llm.model": record.model,
                        "llm.key": record.key,
                        "llm.cache": record.cache if route.kind is not None else None,
                        "gen_ai.usage.input_tokens": record.prompt_tokens or None,
                        "gen_ai.usage.output_tokens": record.generated_tokens or None,
                        "llm.request_id": record.request_id,
                    },
                )

    async def _answer(self, call: Call) -> None:
        route, scope, send, record = call.route, call.scope, call.send, call.record
        reply_headers = call.reply_headers
        try:
            await self._serve(call)
        except GatewayError as exc:
            record.status = exc.status
            body = error_body(exc.status, exc.message, route.openai)
            await Reply(exc.status, {**reply_headers, **exc.headers}, body).send_to(send)
        except ClientGone:
            record.status = 499
        except StreamCut as cut:
            # The head (200) is out: the connection ends without the body's end.
            log.warning("%s %s: upstream broke off a streamed answer: %s",
                        scope["method"], scope["path"], cut)  # fmt: skip
            record.status = 502
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            record.status = 500
            body = error_body(500, "internal error", route.openai)
            with contextlib.suppress(Exception):  # fails if the response had started
                await Reply(500, reply_headers, body).send_to(send)
        finally:
            self.recorder.finish(record)

    async def _serve(self, call: Call) -> None:
        with self.tracing.step("authenticate") as span:
            api_key = self.gatekeeper.authenticate(call.headers)
            span.set_attribute("llm.key", api_key.name if api_key else "-")
        if api_key is not None:
            call.api_key = api_key
            call.record.key = api_key.name
            call.limits = Limits(
                api_key.name,
                api_key.requests_per_minute,
                api_key.max_concurrent,
                api_key.tokens_per_minute,
                api_key.tokens_per_day,
            )
        if call.route.model_in_path:
            # Built from the parsed parameter, one percent-encoded segment: the client's
            # raw path never reaches the upstream (no dot segment, no encoded slash).
            model = call.scope["path"].removeprefix(call.route.path_prefix)
            if not model or model.endswith("/"):  # a trailing slash: no redirect, a 404
                raise GatewayError(404, f"no such endpoint: {call.scope['path']}")
            if len(model) > 256 or not model.isprintable():
                raise GatewayError(400, "invalid model name")
            self.gatekeeper.check_model(api_key, model)
            call.upstream_path = call.route.path_prefix + quote(model, safe="")
        if call.scope["method"] == "POST":
            call.body = await read_body(call.receive, call.headers, self.settings.max_body_bytes)
        if call.route.needs_model:
            call.data, model = self.gatekeeper.request_body(call.route, call.body)
            call.record.model = self.catalog.label(model)
            self.gatekeeper.check_model(api_key, model)
            if call.route.kind is not None:
                self._shape(call, api_key, model)
            if self.settings.log_prompts:
                prompt = call.data.get("prompt") or call.data.get("messages") or ""
                call.record.prompt_text = str(prompt)[:4096]
        if call.route.kind is None:
            await self._pass_through(call)
        else:
            await self._generate(call, call.route.kind)

    def _shape(self, call: Call, api_key: ApiKey | None, model: str) -> None:
        """What a generation request becomes before anything else looks at it."""
        settings = self.settings
        kind = call.route.kind
        assert kind is not None
        # One runner shape per model: no client can force a reload (and the cache key
        # is that of the request Ollama really runs).
        changed = settings.runner_options == "strip" and bool(strip_runner_options(call.data))
        if "keep_alive" in call.data and not kind.is_openai:
            admin = api_key is None or api_key.admin
            load_only = is_load_only(kind, call.data)
            changed = self.keep_alive.apply(call.data, load_only, admin) or changed
        if changed:
            call.body = orjson.dumps(call.data)
        if self.dispatcher is not None:
            ticket = ticket_for(api_key, call.headers, model, settings.queue_deadline_seconds)
            if self.dispatcher.affinity is not None:
                text = rendered(kind, call.data)
                blocks = prompt_blocks(text, ticket.model)
                opening = opens_conversation(kind, call.data)
                ticket = replace(ticket, prefix=blocks, prompt_chars=len(text), opening=opening)
            call.ticket = ticket
        call.estimate = estimate(kind, call.data, settings.quota_estimate_tokens)
        call.usage = UsageTarget(call.record.key, call.record.model, utc_day())

    async def _admit(self, call: Call, lookup_key: str | None) -> Admission | None:
        """Limits and cache lookup; None when Redis could not be asked (limits fail open)."""
        limits = call.limits
        cost = call.estimate.total if call.estimate is not None else 0
        needed = call.estimate.needed if call.estimate is not None else 0
        with self.tracing.step(
            "admission", **{"db.system.name": "redis", "llm.cache.lookup": bool(lookup_key)}
        ) as span:
            admission = await self.admitter.admit(
                limits, lookup_key, now_ms(), cost, call.usage, needed
            )
            outcome = (
                "unavailable"
                if isinstance(admission, Unavailable)
                else admission.verdict.name.lower()
            )
            span.set_attribute("llm.admission.verdict", outcome)
        if isinstance(admission, Unavailable):
            if limits is not None and self.settings.limits_fail_closed:
                raise GatewayError(
                    503, "limits cannot be checked right now (Redis unavailable)",
                    {"Retry-After": "5"},
                )  # fmt: skip
            return None
        if limits is not None:
            call.reply_headers.update(admission.rate_headers(limits))
            if admission.limited:
                verdict = admission.verdict
                self.metrics.rate_limited.labels(limits.key_name, LIMIT_LABELS[verdict]).inc()
                raise GatewayError(429, _limited_message(verdict, limits))
        return admission

    async def _release(self, lease: Lease | None) -> None:
        if lease is not None:
            await self.admitter.settle(lease)

    async def _pass_through(self, call: Call) -> None:
        """Everything but generations: /api/tags, /api/show, /v1/models ... as they are."""
        admission = await self._admit(call, None)
        scope = call.scope
        try:
            async with cancel_on_disconnect(call.receive) as gone:
                started = time.perf_counter()
                path = call.upstream_path or call.route.path
                api_key = call.api_key
                if self.dispatcher is not None and call.route.endpoint == "ps":
                    content = joined_ps(self.dispatcher.instances)
                    if api_key is not None:
                        content = visible_models("ps", content, api_key)
                    await call.reply(Reply(200, call.reply_headers, content))
                    return
                upstream = (
                    self.upstream if self.dispatcher is None else self.dispatcher.any_upstream()
                )
                try:
                    async with upstream.request(
                        scope["method"], path, call.body or None, call.headers
                    ) as response:
                        content = await response.read()
                except UpstreamFailure as failure:
                    self.metrics.upstream_errors.labels(failure.reason).inc()
                    raise failure_error(failure) from None
                call.record.upstream_seconds = time.perf_counter() - started
                if api_key is not None and response.status == 200:
                    # A key sees only the models it may use.
                    content = visible_models(call.route.endpoint, content, api_key)
                await call.reply(
                    Reply(response.status, call.reply_headers, content, response.content_type)
                )
            if gone.is_set():
                call.record.status = 499
        finally:
            await self._release(admission.lease if admission else None)

    async def _generate(self, call: Call, kind: Kind) -> None:
        """Generations and embeddings: the cache, coalescing, stale-if-error."""
        data, record, reply_headers = call.data, call.record, call.reply_headers
        # (Only here: a request refused before, e.g. a 401, says nothing of the cache.)
        reply_headers["X-Cache"] = "BYPASS"
        mode = self.settings.cache_mode
        # Who may share the entry and the upstream call (GATEWAY_CACHE_SCOPE).
        space = call.api_key.cache_namespace if call.api_key is not None else ""
        digest = self.catalog.digest(data["model"])
        plan = cache_plan(mode, kind, data, call.headers, digest, space)
        if plan is None:
            # A model pulled since the last refresh, or one the upstream does not have.
            await self.catalog.refresh_if_stale()
            digest = self.catalog.digest(data["model"])
            plan = cache_plan(mode, kind, data, call.headers, digest, space) or NO_CACHE
        wanted = wanted_form(kind, data)
        admission = await self._admit(call, plan.key if plan.lookup else None)
        lease = admission.lease if admission is not None else None
        charge = admission.charge if admission is not None else None
        with self.tracing.step("cache lookup") as span:
            found = self._look_up(kind, plan, wanted, admission, call)
            span.set_attribute("llm.cache", record.cache)
        hit, stale, flight = found
        semantic = None
        if hit is None and flight is None and record.cache == "MISS" and plan.store:
            semantic = await self._semantic_lookup(call, kind)
            if semantic is not None:
                record.semantic_seconds = semantic.seconds
                record.embed_seconds = semantic.embed_seconds
            if semantic is not None and semantic.hit is not None:
                hit = self._semantic_reply(call, kind, semantic.hit, wanted)
        if hit is not None:
            await call.reply(hit)
            if admission is not None and admission.verdict is not Verdict.HIT:
                # Fresh by this replica's clock only: admission charged it as a miss.
                await self._finish(call, lease, charge, "cache_hits", (0, hit.tokens))
            return
        launched = flight is None
        if flight is not None:
            if record.cache == "HIT":
                reply_headers["Age"] = "0"
        else:
            # The flight frees the slot, settles the tokens and counts the usage of this
            # request along with its store, in one Redis round trip.
            out = Outbound(
                call.route.path, kind, call.body, call.headers, plan, wanted, record.model,
                lease, call.ticket, call.usage, charge, call.estimate,
            )  # fmt: skip
            flight = self.relay.launch(out)
            lease = charge = None
        reply_headers["X-Cache"] = record.cache
        flight.join()
        try:
            # Watched for a disconnect from here: waiting for a slow first token, and
            # while streaming (uvicorn drops writes to a closed connection silently).
            async with cancel_on_disconnect(call.receive) as gone:
                await call.reply(await follow(flight, kind, wanted, stale, record, reply_headers))
            if gone.is_set():
                record.status = 499
        finally:
            flight.leave()
            record.upstream_seconds = flight.upstream_seconds
            if flight.usage is not None:
                record.prompt_tokens = flight.usage.prompt_tokens
                record.generated_tokens = flight.usage.generated_tokens
            if launched:
                await self._release(lease)  # (the flight has settled this request)
                stored = flight.complete and not flight.oversized
                if semantic is not None and stored and plan.key is not None:
                    # The exact cache stored the answer (before the flight finished).
                    assert self.semantic is not None
                    self.semantic.remember(semantic, plan.key, call.ticket)
            else:
                # Not the request that launched the flight: it answers for itself.
                served = "coalesced" if record.cache == "COALESCED" else "cache_hits"
                usage = flight.usage
                tokens = (
                    (usage.prompt_tokens, usage.generated_tokens)
                    if usage is not None and self.settings.quota_hits_cost_tokens
                    else (0, 0)
                )
                await self._finish(call, lease, charge, served, tokens)

    async def _semantic_lookup(self, call: Call, kind: Kind) -> Lookup | None:
        """A missed, storable request that the semantic cache may answer: its lookup."""
        semantic, data, key = self.semantic, call.data, call.api_key
        # No key: auth is disabled, and the stack's switch alone decides.
        if semantic is None or not semantic.applies(
            data["model"], key is None or key.semantic_cache
        ):
            return None
        # The exact cache's sharing scope: the same entries, by meaning.
        namespace = key.cache_namespace if key is not None else ""
        digest = self.catalog.digest(data["model"])
        if digest is None:
            return None
        with self.tracing.step("semantic lookup") as span:
            found = await semantic.lookup(
                kind, data, data["model"], digest, namespace, call.ticket, call.record.model
            )
            span.set_attribute("llm.semantic.hit", found is not None and found.hit is not None)
            return found

    def _semantic_reply(
        self, call: Call, kind: Kind, hit: SemanticHit, wanted: Wanted
    ) -> Reply | None:
        headers = {**call.reply_headers, "X-Cache-Similarity": f"{hit.similarity:.4f}"}
        reply = replay(kind, hit.entry, wanted, "SEMANTIC", headers)
        if reply is not None:
            call.record.cache = "SEMANTIC"
            reply.tokens = hit.entry.tokens
        return reply

    def _look_up(
        self, kind: Kind, plan: CachePlan, wanted: Wanted, admission: Admission | None, call: Call
    ) -> tuple[Reply | None, Entry | None, Flight | None]:
        """A fresh entry replayed, else a stale one kept for stale-if-error, and the flight
        already under way for the same key (coalescing); `call.record.cache` says which."""
        record = call.record
        stale: Entry | None = None
        if admission is not None and admission.cached is not None:
            entry = Entry.decode(admission.cached)
            if entry is not None and (admission.verdict is Verdict.HIT or entry.is_fresh(now_ms())):
                hit = replay(kind, entry, wanted, "HIT", call.reply_headers)
                if hit is not None:
                    record.cache = "HIT"
                    hit.tokens = entry.tokens
                    return hit, None, None
            elif entry is not None:
                stale = entry
        looked_up = (
            plan.key is not None and plan.lookup and admission is not None and admission.looked_up
        )
        record.cache = "MISS" if looked_up else "BYPASS"
        flight = self.flights.get(plan.key) if plan.key is not None else None
        if flight is not None:
            # A flight that already finished (its entry is being written) is a hit.
            record.cache = "HIT" if flight.done and flight.complete else "COALESCED"
        return None, stale, flight

    async def _finish(
        self,
        call: Call,
        lease: Lease | None,
        charge: Charge | None,
        served: str,
        tokens: tuple[int, int],
    ) -> None:
        """A request that did not launch upstream work: its usage, its quota settled (a
        hit or a follower costs no tokens unless configured to), its slot freed."""
        prompt, completion = tokens
        counts = {
            "requests": 1,
            served: 1,
            "errors": int(call.record.status >= 400),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
        }
        await self.admitter.settle(
            lease,
            charge=charge,
            tokens=prompt + completion,
            usage=call.usage,
            counts=counts,
            now_ms=now_ms(),
        )


def _limited_message(verdict: Verdict, limits: Limits) -> str:
    if verdict is Verdict.RATE_LIMITED:
        return f"rate limit exceeded: {limits.requests_per_minute} requests per minute"
    if verdict is Verdict.TOKENS_PER_MINUTE:
        return f"token quota exceeded: {limits.tokens_per_minute} tokens per minute"
    if verdict is Verdict.TOKENS_PER_DAY:
        return f"token quota exceeded: {limits.tokens_per_day} tokens per day (UTC)"
    return f"too many concurrent requests: {limits.max_concurrent} at a time"


class ProxyEndpoint:
    """The ASGI app of one proxy route."""

    def __init__(self, route: ProxyRoute, proxy: Proxy) -> None:
        self.route = route
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.proxy.handle(self.route, scope, receive, send)
