"""OpenTelemetry traces of the request path, off by default (GATEWAY_TRACING=true).

When on, each proxied request is a SERVER span (continuing the client's
`traceparent`), with children for authentication and admission (the Redis trip),
the cache lookup, the time queued for a slot, and the upstream call (a CLIENT span
whose context goes to Ollama as `traceparent`). Attributes follow OpenTelemetry's
GenAI conventions where they apply (`gen_ai.request.model`,
`gen_ai.usage.input_tokens`, ...), plus the cache outcome and the key's *name*
(never the key).

The SDK is configured by the standard variables: OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER
and OTEL_TRACES_SAMPLER_ARG, OTEL_SERVICE_NAME. Spans leave in batches from a
background thread (BatchSpanProcessor) over OTLP/HTTP, 64 spans at a time unless
OTEL_BSP_MAX_EXPORT_BATCH_SIZE is set (see EXPORT_BATCH_SPANS).

When off, the request path holds `NO_TRACING` instead: each of its steps is one
shared do-nothing context manager yielding a span that records nothing, so the path
reads the same either way and no span is created. What only a recorded span needs
(attributes read from an answer's body) is behind `span.is_recording()`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llm_gateway import __version__

# https://opentelemetry.io/docs/specs/semconv/gen-ai/ (operation names by endpoint kind).
OPERATIONS = {
    "generate": "text_completion",
    "chat": "chat",
    "embed": "embeddings",
    "embeddings": "embeddings",
    "openai_chat": "chat",
    "openai_completions": "text_completion",
    "openai_embeddings": "embeddings",
}
_PROPAGATOR = TraceContextTextMapPropagator()
# Spans per export unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE says otherwise (the SDK's
# default is 512). The export thread encodes a batch to protobuf in Python, and while
# it does the event loop gets the GIL back only between its switch intervals: a batch
# of 512 stalled requests for 27-52 ms (hit p99 at c=1, every request traced), 64 for
# 5-10 ms, at about 15% more CPU per traced hit from the extra exports.
EXPORT_BATCH_SPANS = 64


class Steps(Protocol):
    """What the request path asks of tracing, on or off."""

    def request(
        self, method: str, path: str, endpoint: str, headers: Mapping[str, str]
    ) -> AbstractContextManager[Span]: ...

    def step(self, name: str, **attributes: Any) -> AbstractContextManager[Span]: ...

    def upstream(
        self, operation: str | None, model: str, server: str, headers: MutableMapping[str, str]
    ) -> AbstractContextManager[Span]: ...

    def shutdown(self) -> None: ...


class NoTracing:
    """Tracing off: every step is the same do-nothing context manager, and its span
    (OpenTelemetry's INVALID_SPAN) records nothing."""

    _OFF: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)

    def request(
        self, method: str, path: str, endpoint: str, headers: Mapping[str, str]
    ) -> AbstractContextManager[Span]:
        return self._OFF

    def step(self, name: str, **attributes: Any) -> AbstractContextManager[Span]:
        return self._OFF

    def upstream(
        self, operation: str | None, model: str, server: str, headers: MutableMapping[str, str]
    ) -> AbstractContextManager[Span]:
        return self._OFF

    def shutdown(self) -> None:
        pass


NO_TRACING = NoTracing()


class Tracing:
    """A tracer provider of its own (never the process-global one) and its spans."""

    def __init__(self, processor: SpanProcessor) -> None:
        attributes = {"service.version": __version__}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = "llm-gateway"
        self.provider = TracerProvider(resource=Resource.create(attributes))
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("llm_gateway", __version__)

    @classmethod
    def otlp(cls) -> Tracing:
        """Exporting over OTLP/HTTP, as the OTEL_* variables say."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        batch = None if "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in os.environ else EXPORT_BATCH_SPANS
        return cls(BatchSpanProcessor(OTLPSpanExporter(), max_export_batch_size=batch))

    @contextmanager
    def request(
        self, method: str, path: str, endpoint: str, headers: Mapping[str, str]
    ) -> Iterator[Span]:
        """The SERVER span of one request, continuing the client's trace if it sent one."""
        parent = _PROPAGATOR.extract(headers)
        name = f"{method} {path}"
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": path,
            "llm.endpoint": endpoint,
        }
        operation = OPERATIONS.get(endpoint)
        if operation is not None:
            attributes |= {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": "ollama",
                "gen_ai.system": "ollama",
            }
        with self.tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip
            yield span

    @contextmanager
    def step(self, name: str, **attributes: Any) -> Iterator[Span]:
        """An INTERNAL child of the current span (admission, cache lookup, queued)."""
        with self.tracer.start_as_current_span(
            name, attributes=_clean(attributes), record_exception=False,
            set_status_on_exception=False,
        ) as span:  # fmt: skip
            yield span

    @contextmanager
    def upstream(
        self, operation: str | None, model: str, server: str, headers: MutableMapping[str, str]
    ) -> Iterator[Span]:
        """The CLIENT span of a call to Ollama; its context is written into `headers`."""
        name = f"{operation or 'call'} {model}"
        host, _, port = server.rpartition(":")
        attributes = _clean(
            {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": "ollama",
                "gen_ai.system": "ollama",
                "gen_ai.request.model": model,
                "server.address": host or server,
                "server.port": int(port) if port.isdigit() else None,
            }
        )
        with self.tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False,
            set_status_on_exception=False,
        ) as span:  # fmt: skip
            _PROPAGATOR.inject(headers)
            yield span

    def shutdown(self) -> None:
        self.provider.shutdown()


def finish_request(span: Span, status: int, attributes: Mapping[str, Any]) -> None:
    span.set_attribute("http.response.status_code", status)
    span.set_attributes(_clean(dict(attributes)))
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def fail(span: Span, message: str) -> None:
    span.set_status(Status(StatusCode.ERROR, message))


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None and v != ""}


__all__ = [
    "NO_TRACING",
    "OPERATIONS",
    "NoTracing",
    "Span",
    "Steps",
    "Tracing",
    "fail",
    "finish_request",
]
