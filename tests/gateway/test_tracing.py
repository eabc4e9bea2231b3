"""OpenTelemetry traces: the span tree (the SDK's in-memory exporter, gateway in process)
and what the OTLP/HTTP exporter really sends (a gateway process, a receiver that
decodes the protobuf), the client's trace continued and passed on to Ollama."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import web
from llm_gateway.app import create_app
from llm_gateway.contract import digest_of, mint_key
from llm_gateway.observe import AccessLog
from llm_gateway.settings import Settings
from llm_gateway.tracing import EXPORT_BATCH_SPANS, NO_TRACING, Tracing
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.support.gateway import GatewayFactory, GatewayProcess
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"


class Upstream:
    """A small Ollama stand-in that notes the headers each generation arrived with."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.port = free_port()

    async def tags(self, request: web.Request) -> web.Response:
        model = {"name": "llama3.2:latest", "model": "llama3.2:latest", "digest": "ab" * 32}
        return web.json_response({"models": [model]})

    async def generate(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        await request.read()
        return web.json_response(
            {"model": "llama3.2", "response": "hi", "done": True, "done_reason": "stop",
             "prompt_eval_count": 7, "eval_count": 3, "eval_duration": 1000}
        )  # fmt: skip

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Upstream]:
        app = web.Application()
        app.router.add_get("/api/tags", self.tags)
        app.router.add_post("/api/generate", self.generate)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield self
        finally:
            await runner.cleanup()


@asynccontextmanager
async def gateway_in_process(settings: Settings, tracing: Tracing) -> AsyncIterator[str]:
    app = create_app(settings, AccessLog(False), tracing)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the gateway did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def by_name(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


async def test_the_span_tree_of_a_miss(redis_server: RedisServer) -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter))
    key = mint_key()
    upstream = Upstream()
    async with upstream.running():
        settings = Settings(
            upstream_url=f"http://127.0.0.1:{upstream.port}",
            redis_url=redis_server.url,
            api_keys=[digest_of(key)],
            tracing=True,
        )
        async with (
            gateway_in_process(settings, tracing) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as http,
        ):
            answer = await http.post(
                "/api/generate",
                json={"model": "llama3.2", "prompt": "trace me", "stream": False},
                headers={"Authorization": f"Bearer {key}", "traceparent": TRACEPARENT},
            )
    assert answer.status_code == 200
    spans = by_name(list(exporter.get_finished_spans()))
    root = spans["POST /api/generate"]
    assert root.kind is SpanKind.SERVER
    assert root.context is not None
    assert format(root.context.trace_id, "032x") == TRACE_ID  # the client's trace, continued
    assert root.parent is not None
    assert format(root.parent.span_id, "016x") == CLIENT_SPAN
    attributes = dict(root.attributes or {})
    assert attributes["gen_ai.request.model"] == "llama3.2"
    assert attributes["gen_ai.operation.name"] == "text_completion"
    assert attributes["gen_ai.usage.input_tokens"] == 7
    assert attributes["gen_ai.usage.output_tokens"] == 3
    assert attributes["llm.cache"] == "BYPASS"  # not deterministic: no cache
    assert attributes["http.response.status_code"] == 200
    assert attributes["llm.key"] == f"key-{digest_of(key)[:8]}"
    assert key not in str(attributes)  # the key's name, never the key
    for child in ("authenticate", "admission", "cache lookup", "text_completion llama3.2"):
        span = spans[child]
        assert span.parent is not None
        assert span.parent.span_id == root.context.span_id, child
    admission = dict(spans["admission"].attributes or {})
    assert admission["db.system.name"] == "redis"
    assert admission["llm.admission.verdict"] == "proceed"
    client = spans["text_completion llama3.2"]
    assert client.kind is SpanKind.CLIENT
    client_attributes = dict(client.attributes or {})
    assert client_attributes["server.port"] == upstream.port
    assert client_attributes["gen_ai.usage.output_tokens"] == 3
    # Ollama got the gateway's CLIENT span as its parent.
    (seen,) = upstream.headers
    assert client.context is not None
    sent = seen["traceparent"]
    assert sent == f"00-{TRACE_ID}-{format(client.context.span_id, '016x')}-01"
    assert "Authorization" not in seen


async def test_traceparent_goes_on_to_ollama_when_tracing_is_off(redis_server: RedisServer) -> None:
    exporter = InMemorySpanExporter()
    upstream = Upstream()
    async with upstream.running():
        settings = Settings(
            upstream_url=f"http://127.0.0.1:{upstream.port}",
            redis_url=redis_server.url,
            auth_disabled=True,
        )
        app = create_app(settings, AccessLog(False))
        assert app.state.services.proxy.tracing is NO_TRACING
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))  # type: ignore[arg-type]
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await http.post(
                "/api/generate", json={"model": "llama3.2", "prompt": "x", "stream": False},
                headers={"traceparent": TRACEPARENT},
            )  # fmt: skip
        server.should_exit = True
        await task
    assert upstream.headers[0]["traceparent"] == TRACEPARENT
    assert exporter.get_finished_spans() == ()


class Receiver:
    """An OTLP/HTTP trace receiver: decodes what the exporter posts to /v1/traces."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()

    async def traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.requests.append(message)
        self.headers.append(dict(request.headers))
        return web.Response(body=b"", content_type="application/x-protobuf")

    def spans(self) -> list[Any]:
        return [
            span
            for message in self.requests
            for resource in message.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def wait_for(self, enough: Callable[[list[Any]], bool]) -> None:
        """Until the spans received so far are `enough` (at most 10 s)."""
        deadline = time.monotonic() + 10
        while not enough(self.spans()):
            assert time.monotonic() < deadline, f"{len(self.spans())} spans arrived"
            time.sleep(0.05)

    def gateway(
        self,
        factory: GatewayFactory,
        redis_server: RedisServer,
        emulator: Any,
        **env: str,
    ) -> GatewayProcess:
        """A gateway process tracing every request to this receiver."""
        return factory(
            GATEWAY_UPSTREAM_URL=emulator.url,
            GATEWAY_REDIS_URL=redis_server.url,
            GATEWAY_TRACING="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{self.port}",
            **env,
        )

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        async def serve() -> web.AppRunner:
            app = web.Application()
            app.router.add_post("/v1/traces", self.traces)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            return runner

        thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        thread.start()
        runner = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(5)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(5)


def attribute(span: Any, name: str) -> Any:
    for kv in span.attributes:
        if kv.key == name:
            value = kv.value
            return getattr(value, value.WhichOneof("value"))
    raise KeyError(name)


def test_the_otlp_exporter_sends_the_spans_a_collector_decodes(
    tmp_path: Path, gateway_factory: GatewayFactory, redis_server: RedisServer, emulator: Any
) -> None:
    key = mint_key()
    with Receiver().running() as receiver:
        gateway = receiver.gateway(
            gateway_factory,
            redis_server,
            emulator,
            GATEWAY_AUTH_DISABLED="false",
            GATEWAY_API_KEYS=digest_of(key),
            OTEL_EXPORTER_OTLP_HEADERS="x-tenant=llm-stack",
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_SERVICE_NAME="gateway-under-test",
        )
        answer = httpx.post(
            f"{gateway.url}/api/chat",
            json={"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}],
                  "stream": False},
            headers={"Authorization": f"Bearer {key}", "traceparent": TRACEPARENT},
            timeout=10,
        )  # fmt: skip
        assert answer.status_code == 200
        receiver.wait_for(lambda spans: len({s.name for s in spans}) >= 5)
    spans = {span.name: span for span in receiver.spans()}
    root = spans["POST /api/chat"]
    assert root.trace_id.hex() == TRACE_ID
    assert root.parent_span_id.hex() == CLIENT_SPAN
    assert attribute(root, "gen_ai.operation.name") == "chat"
    assert attribute(root, "gen_ai.request.model") == "llama3.2"
    assert attribute(root, "gen_ai.usage.output_tokens") > 0
    client = spans["chat llama3.2"]
    assert client.parent_span_id == root.span_id
    assert receiver.headers[0]["x-tenant"] == "llm-stack"
    resource = receiver.requests[0].resource_spans[0].resource
    names = {kv.key: kv.value.string_value for kv in resource.attributes}
    assert names["service.name"] == "gateway-under-test"


@pytest.mark.parametrize("sampler_arg", ["0"])
def test_a_zero_sampling_ratio_exports_nothing(
    gateway_factory: GatewayFactory, redis_server: RedisServer, emulator: Any, sampler_arg: str
) -> None:
    with Receiver().running() as receiver:
        gateway = receiver.gateway(
            gateway_factory,
            redis_server,
            emulator,
            OTEL_TRACES_SAMPLER="traceidratio",
            OTEL_TRACES_SAMPLER_ARG=sampler_arg,
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        for _ in range(3):
            httpx.post(
                f"{gateway.url}/api/generate",
                json={"model": "llama3.2", "prompt": "x", "stream": False}, timeout=10,
            )  # fmt: skip
        time.sleep(0.5)
        assert receiver.spans() == []


@pytest.mark.parametrize(("setting", "batch"), [(None, EXPORT_BATCH_SPANS), ("16", 16)])
def test_spans_leave_in_small_batches_unless_configured(
    gateway_factory: GatewayFactory,
    redis_server: RedisServer,
    emulator: Any,
    setting: str | None,
    batch: int,
) -> None:
    """A batch is encoded on the export thread while the event loop waits for the GIL,
    so the gateway exports EXPORT_BATCH_SPANS at a time, not the SDK's 512; the
    standard variable still decides when it is set; what is left goes at shutdown."""
    override = {} if setting is None else {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": setting}
    with Receiver().running() as receiver:
        gateway = receiver.gateway(
            gateway_factory,
            redis_server,
            emulator,
            # No export on a timer within the test: only a full batch leaves.
            OTEL_BSP_SCHEDULE_DELAY="600000",
            **override,
        )
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            for n in range(40):  # five or more spans each: more than two full batches
                body = {"model": "llama3.2", "prompt": f"batch {n}", "stream": False}
                assert client.post("/api/generate", json=body).status_code == 200
        receiver.wait_for(lambda spans: len(spans) >= 2 * batch)
        assert gateway.stop() == 0  # and the rest leaves as it shuts down
        sizes = [sum(len(s.spans) for r in m.resource_spans for s in r.scope_spans)
                 for m in receiver.requests]  # fmt: skip
    *full, rest = sizes
    assert len(full) >= 2
    assert all(size == batch for size in full), sizes
    assert 0 < rest <= batch
    roots = [span for span in receiver.spans() if span.name == "POST /api/generate"]
    assert len(roots) == 40  # none lost


def test_off_every_step_is_one_shared_no_op_with_a_span_that_records_nothing() -> None:
    headers: dict[str, str] = {}
    steps = [
        NO_TRACING.request("POST", "/api/chat", "chat", {}),
        NO_TRACING.step("admission", **{"db.system.name": "redis"}),
        NO_TRACING.upstream("chat", "m", "127.0.0.1:1", headers),
    ]
    assert all(step is steps[0] for step in steps)
    for step in steps:
        with step as span, step as nested:  # reentrant: steps nest in the request's
            assert span is nested
            assert not span.is_recording()
            span.set_attribute("llm.key", "team-a")  # accepted, kept nowhere
    assert headers == {}  # no traceparent is sent when off
