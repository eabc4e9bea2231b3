"""The request path: auth → body → limits + cache lookup → coalesced upstream call.

Each proxy route is a small ASGI app (`ProxyEndpoint`) over one shared `Proxy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from llm_gateway.admission import Admission, Admitter, Lease, Limits, Verdict
from llm_gateway.asgi_io import (
    ClientGone,
    Receive,
    Reply,
    Scope,
    Send,
    cancel_on_disconnect,
    header_map,
    read_body,
)
from llm_gateway.cache.canonical import Kind, cache_key, is_deterministic, is_load_only
from llm_gateway.cache.completeness import is_complete, usage_of
from llm_gateway.cache.entry import Entry, Form
from llm_gateway.cache.forms import convert
from llm_gateway.cache.store import CacheStore
from llm_gateway.catalog import ModelCatalog
from llm_gateway.errors import JSON_TYPE, GatewayError, error_body
from llm_gateway.flight import Flight, FlightRegistry
from llm_gateway.keys import ApiKey, KeyRing, plausible_key, presented_key, utcnow
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.observe import Recorder, RequestRecord, request_id_from
from llm_gateway.redis_guard import Unavailable
from llm_gateway.request_id import SCOPE_KEY
from llm_gateway.routes import ProxyRoute
from llm_gateway.settings import Settings
from llm_gateway.upstream import Upstream, UpstreamFailure

_MAX_MODEL_NAME = 256
log = logging.getLogger("llm_gateway")


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What the cache may do for one request."""

    key: str | None  # None: the cache plays no part (X-Cache: BYPASS)
    lookup: bool
    store: bool


_NO_CACHE = CachePlan(None, lookup=False, store=False)


@dataclass(frozen=True, slots=True)
class Wanted:
    """The form the client asked for."""

    form: Form
    include_usage: bool = False


def _wanted(kind: Kind, data: dict[str, Any]) -> Wanted:
    if kind.is_embedding:
        return Wanted(Form.JSON)
    if kind.is_openai:
        if data.get("stream") is True:
            options = data.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return Wanted(Form.SSE, usage)
        return Wanted(Form.JSON)
    return Wanted(Form.JSON if data.get("stream") is False else Form.NDJSON)


def _midstream_error(form: Form, message: str) -> bytes:
    if form is Form.SSE:
        return b"data: " + error_body(502, message, openai=True) + b"\n\n"
    return error_body(502, message, openai=False) + b"\n"


class Proxy:
    def __init__(
        self,
        settings: Settings,
        keyring: KeyRing | None,
        upstream: Upstream,
        admitter: Admitter,
        store: CacheStore,
        catalog: ModelCatalog,
        flights: FlightRegistry,
        recorder: Recorder,
        metrics: GatewayMetrics,
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self.upstream = upstream
        self.admitter = admitter
        self.store = store
        self.catalog = catalog
        self.flights = flights
        self.recorder = recorder
        self.metrics = metrics

    # -- entry ----------------------------------------------------------------------

    async def handle(self, route: ProxyRoute, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        request_id = scope.get(SCOPE_KEY) or request_id_from(headers.get("x-request-id"))
        record = self.recorder.start(request_id, scope["method"], scope["path"], route.endpoint)
        reply_headers = {"X-Request-ID": request_id}
        if route.kind is not None:
            reply_headers["X-Cache"] = "BYPASS"
        try:
            await self._serve(route, scope, receive, send, headers, record, reply_headers)
        except GatewayError as exc:
            record.status = exc.status
            await Reply(
                exc.status,
                {**reply_headers, **exc.headers},
                error_body(exc.status, exc.message, route.openai),
            ).send_to(send)
        except ClientGone:
            record.status = 499
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            record.status = 500
            with contextlib.suppress(Exception):  # fails if the response had started
                await Reply(
                    500, reply_headers, error_body(500, "internal error", route.openai)
                ).send_to(send)
        finally:
            self.recorder.finish(record)

    async def _serve(
        self,
        route: ProxyRoute,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        record: RequestRecord,
        reply_headers: dict[str, str],
    ) -> None:
        api_key = self._authenticate(headers, record)
        body = b""
        if scope["method"] == "POST":
            body = await read_body(receive, headers, self.settings.max_body_bytes)
        data: dict[str, Any] = {}
        if route.needs_model:
            data = self._parse(body)
            model = self._model_of(route, data)
            messages = data.get("messages")
            if isinstance(messages, list) and len(messages) > self.settings.max_messages:
                raise GatewayError(
                    400, f"too many messages: {len(messages)} (limit {self.settings.max_messages})"
                )
            record.model = self.catalog.label(model)
            if api_key is not None and not api_key.allows(model):
                self.metrics.auth_failures.labels("model_forbidden", api_key.name).inc()
                raise GatewayError(403, f"this API key may not use model '{model}'")
            if self.settings.log_prompts:
                record.prompt_text = str(data.get("prompt") or data.get("messages") or "")[:4096]
        limits = (
            Limits(api_key.name, api_key.requests_per_minute, api_key.max_concurrent)
            if api_key is not None
            else None
        )
        if route.kind is None:
            await self._pass_through(route, scope, receive, send, body, headers, record,
                                     reply_headers, limits)  # fmt: skip
        else:
            await self._generate(route, route.kind, receive, send, body, data, headers, record,
                                 reply_headers, limits)  # fmt: skip

    # -- checks ---------------------------------------------------------------------

    def _authenticate(self, headers: dict[str, str], record: RequestRecord) -> ApiKey | None:
        if self.keyring is None:
            return None
        challenge = {"WWW-Authenticate": "Bearer"}
        presented = presented_key(headers.get("authorization"), headers.get("x-api-key"))
        if presented is None:
            self.metrics.auth_failures.labels("missing", "-").inc()
            raise GatewayError(
                401, "missing API key: send 'Authorization: Bearer <key>'", challenge
            )
        api_key = self.keyring.lookup(presented) if plausible_key(presented) else None
        if api_key is None:
            self.metrics.auth_failures.labels("unknown", "-").inc()
            raise GatewayError(401, "invalid API key", challenge)
        if api_key.expired(utcnow()):
            self.metrics.auth_failures.labels("expired", api_key.name).inc()
            raise GatewayError(401, "API key expired", challenge)
        record.key = api_key.name
        return api_key

    @staticmethod
    def _parse(body: bytes) -> dict[str, Any]:
        if not body.strip():
            raise GatewayError(400, "missing request body")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise GatewayError(400, f"invalid JSON in request body: {exc.msg}") from None
        if not isinstance(data, dict):
            raise GatewayError(400, "request body must be a JSON object")
        return data

    @staticmethod
    def _model_of(route: ProxyRoute, data: dict[str, Any]) -> str:
        model = data.get("model")
        if route.endpoint == "show" and not model:
            model = data.get("name")  # /api/show still accepts the deprecated field
        if not isinstance(model, str) or not model:
            raise GatewayError(400, "model is required")
        if len(model) > _MAX_MODEL_NAME or not model.isprintable():
            raise GatewayError(400, "invalid model name")
        return model

    def _cache_plan(
        self, kind: Kind, data: dict[str, Any], headers: dict[str, str]
    ) -> CachePlan | None:
        """None when the request would be cacheable but its model's digest is unknown."""
        mode = self.settings.cache_mode
        if mode == "off" or is_load_only(kind, data):
            return _NO_CACHE
        if mode == "deterministic" and not is_deterministic(kind, data):
            return _NO_CACHE
        directives = headers.get("cache-control", "").lower()
        no_store = "no-store" in directives
        no_cache = no_store or "no-cache" in directives
        model = data["model"]
        digest = self.catalog.digest(model)
        if digest is None:
            return None
        key = cache_key(kind, model if ":" in model else f"{model}:latest", digest, data)
        return CachePlan(key, lookup=not no_cache, store=not no_store)

    async def _admit(
        self, limits: Limits | None, lookup_key: str | None, reply_headers: dict[str, str]
    ) -> Admission | None:
        admission = await self.admitter.admit(limits, lookup_key, _now_ms())
        if isinstance(admission, Unavailable):
            if limits is not None and self.settings.limits_fail_closed:
                raise GatewayError(
                    503, "limits cannot be checked right now (Redis unavailable)",
                    {"Retry-After": "5"},
                )  # fmt: skip
            return None
        if limits is not None:
            reply_headers.update(admission.rate_headers(limits.requests_per_minute))
            if admission.limited:
                which = "rpm" if admission.verdict is Verdict.RATE_LIMITED else "concurrency"
                self.metrics.rate_limited.labels(limits.key_name, which).inc()
                message = (
                    f"rate limit exceeded: {limits.requests_per_minute} requests per minute"
                    if which == "rpm"
                    else f"too many concurrent requests: {limits.max_concurrent} at a time"
                )
                raise GatewayError(429, message)
        return admission

    async def _release(self, lease: Lease | None) -> None:
        if lease is not None:
            await self.admitter.settle(lease)

    # -- pass-through routes ----------------------------------------------------------

    async def _pass_through(
        self,
        route: ProxyRoute,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        headers: dict[str, str],
        record: RequestRecord,
        reply_headers: dict[str, str],
        limits: Limits | None,
    ) -> None:
        admission = await self._admit(limits, None, reply_headers)
        try:
            async with cancel_on_disconnect(receive) as gone:
                started = time.perf_counter()
                try:
                    # The path as the client sent it (still percent-encoded).
                    path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
                    response = await self.upstream.open(
                        scope["method"], path, body or None, headers,
                        scope.get("query_string", b"").decode("latin-1"),
                    )  # fmt: skip
                    try:
                        content = await response.read()
                    finally:
                        await response.aclose()
                except UpstreamFailure as failure:
                    self.metrics.upstream_errors.labels(failure.reason).inc()
                    raise self._failure_error(failure) from None
                record.upstream_seconds = time.perf_counter() - started
                record.status = response.status
                reply = Reply(response.status, reply_headers, content, response.content_type)
                reply.on_first_byte = record.mark_first_byte
                await reply.send_to(send)
            if gone.is_set():
                record.status = 499
        finally:
            await self._release(admission.lease if admission else None)

    @staticmethod
    def _failure_error(failure: UpstreamFailure) -> GatewayError:
        extra = {"Retry-After": "5"} if failure.status in (503, 504) else {}
        return GatewayError(failure.status, failure.message, extra)

    # -- generation routes ------------------------------------------------------------

    async def _generate(
        self,
        route: ProxyRoute,
        kind: Kind,
        receive: Receive,
        send: Send,
        body: bytes,
        data: dict[str, Any],
        headers: dict[str, str],
        record: RequestRecord,
        reply_headers: dict[str, str],
        limits: Limits | None,
    ) -> None:
        plan = self._cache_plan(kind, data, headers)
        if plan is None:
            # A model pulled since the last refresh, or one the upstream does not have.
            await self.catalog.refresh_if_stale()
            plan = self._cache_plan(kind, data, headers) or _NO_CACHE
        wanted = _wanted(kind, data)
        admission = await self._admit(limits, plan.key if plan.lookup else None, reply_headers)
        redis_ok = admission is not None
        stale: Entry | None = None
        if admission is not None and admission.cached is not None:
            entry = Entry.decode(admission.cached)
            if entry is not None:
                now_ms = _now_ms()
                if admission.verdict is Verdict.HIT or entry.is_fresh(now_ms):
                    hit = self._replay(kind, entry, wanted, "HIT", now_ms, reply_headers)
                    if hit is not None:
                        record.cache = "HIT"
                        record.status = 200
                        hit.on_first_byte = record.mark_first_byte
                        await hit.send_to(send)
                        await self._release(admission.lease if admission else None)
                        return
                else:
                    stale = entry
        record.cache = "MISS" if plan.key is not None and plan.lookup and redis_ok else "BYPASS"
        lease = admission.lease if admission is not None else None
        flight = self.flights.get(plan.key) if plan.key is not None else None
        if flight is not None:
            # A flight that already finished (its entry is being written) is a hit.
            landed = flight.done and flight.complete
            record.cache = "HIT" if landed else "COALESCED"
            if landed:
                reply_headers["Age"] = "0"
        else:
            # The flight frees the slot with its store, in one round trip.
            flight = self._launch(route, kind, body, headers, plan, wanted, record.model, lease)
            lease = None
        reply_headers["X-Cache"] = record.cache
        flight.join()
        try:
            async with cancel_on_disconnect(receive) as gone:
                reply = await self._follow(flight, kind, wanted, stale, record, reply_headers)
                record.status = reply.status
                reply.on_first_byte = record.mark_first_byte
                await reply.send_to(send)
            if gone.is_set():
                record.status = 499
        finally:
            flight.leave()
            record.upstream_seconds = flight.upstream_seconds
            if flight.usage is not None:
                record.prompt_tokens = flight.usage.prompt_tokens
                record.generated_tokens = flight.usage.generated_tokens
            await self._release(lease)

    def _replay(
        self,
        kind: Kind,
        entry: Entry,
        wanted: Wanted,
        label: str,
        now_ms: int,
        reply_headers: dict[str, str],
    ) -> Reply | None:
        content = convert(kind, entry.form, entry.body, wanted.form, wanted.include_usage)
        if content is None:
            return None
        headers = {**reply_headers, "X-Cache": label, "Age": str(entry.age_seconds(now_ms))}
        return Reply(200, headers, content, wanted.form.content_type)

    def _launch(
        self,
        route: ProxyRoute,
        kind: Kind,
        body: bytes,
        headers: dict[str, str],
        plan: CachePlan,
        wanted: Wanted,
        model_label: str,
        lease: Lease | None,
    ) -> Flight:
        flight = Flight(plan.key, wanted.form, wanted.include_usage)
        upstream, store, metrics, admitter = self.upstream, self.store, self.metrics, self.admitter

        async def run(flight: Flight) -> None:
            settled = False
            try:
                await call(flight)
                settled = True
            finally:
                if not settled and lease is not None:
                    # Cancelled or failed: free the slot without holding up the cancel.
                    asyncio.get_running_loop().create_task(admitter.settle(lease))

        async def call(flight: Flight) -> None:
            started = time.perf_counter()
            try:
                response = await upstream.open("POST", route.path, body, headers)
            except UpstreamFailure as failure:
                metrics.upstream_errors.labels(failure.reason).inc()
                flight.upstream_seconds = time.perf_counter() - started
                flight.fail(failure)
                await admitter.settle(lease)
                return
            flight.started(response.status, response.content_type)
            try:
                async for chunk in response.chunks():
                    flight.publish(chunk)
                    # Let followers forward it now, before this task reads on or does
                    # its end-of-stream work: the first byte is what clients wait for.
                    await asyncio.sleep(0)
            except UpstreamFailure as failure:
                metrics.upstream_errors.labels(failure.reason).inc()
                flight.failure = failure
                if wanted.form is not Form.JSON:
                    flight.publish(_midstream_error(wanted.form, failure.message))
                flight.finish(False)
                await admitter.settle(lease)
                return
            finally:
                await response.aclose()
                flight.upstream_seconds = time.perf_counter() - started
            content = flight.body
            if response.status >= 500:
                metrics.upstream_errors.labels("status").inc()
            complete = is_complete(kind, wanted.form, response.status, content)
            if complete:
                usage = flight.usage = usage_of(kind, wanted.form, content)
                if usage is not None:
                    metrics.tokens_generated.labels(model_label).inc(usage.generated_tokens)
                    metrics.prompt_tokens.labels(model_label).inc(usage.prompt_tokens)
                    if usage.generation_seconds > 0 and usage.generated_tokens:
                        metrics.tokens_per_second.labels(model_label).observe(
                            usage.generated_tokens / usage.generation_seconds
                        )
            flight.finish(complete)
            entry = None
            if complete and plan.key is not None and plan.store:
                entry = store.record(plan.key, wanted.form, content, _now_ms())
            await admitter.settle(lease, entry)

        self.flights.add(flight)
        flight.launch(run)
        return flight

    async def _follow(
        self,
        flight: Flight,
        kind: Kind,
        wanted: Wanted,
        stale: Entry | None,
        record: RequestRecord,
        reply_headers: dict[str, str],
    ) -> Reply:
        await flight.wait_started()
        flight_form = flight.form
        status = flight.status
        if status is None or status >= 500:
            if stale is not None:
                reply = self._replay(kind, stale, wanted, "STALE", _now_ms(), reply_headers)
                if reply is not None:
                    record.cache = "STALE"
                    return reply
            if status is None:
                failure = flight.failure
                assert failure is not None
                error = self._failure_error(failure)
                return Reply(error.status, {**reply_headers, **error.headers},
                             error_body(error.status, error.message, kind.is_openai))  # fmt: skip
        if status != 200:
            await flight.wait_done()
            return Reply(status, reply_headers, flight.body, flight.content_type)
        same_form = wanted.form is flight_form and (
            wanted.form is not Form.SSE or wanted.include_usage == flight.include_usage
        )
        if same_form and wanted.form is not Form.JSON:
            return Reply(200, reply_headers, content_type=flight.content_type,
                         stream=flight.follow())  # fmt: skip
        await flight.wait_done()
        if not flight.complete:
            if stale is not None:
                reply = self._replay(kind, stale, wanted, "STALE", _now_ms(), reply_headers)
                if reply is not None:
                    record.cache = "STALE"
                    return reply
            message = flight.failure.message if flight.failure else "upstream response incomplete"
            return Reply(502, reply_headers, error_body(502, message, kind.is_openai), JSON_TYPE)
        content = convert(kind, flight_form, flight.body, wanted.form, wanted.include_usage)
        if content is None:
            message = "cannot convert the upstream response"
            return Reply(502, reply_headers, error_body(502, message, kind.is_openai))
        return Reply(200, reply_headers, content, wanted.form.content_type)


class ProxyEndpoint:
    """The ASGI app of one proxy route."""

    def __init__(self, route: ProxyRoute, proxy: Proxy) -> None:
        self.route = route
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.proxy.handle(self.route, scope, receive, send)
