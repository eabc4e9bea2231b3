"""What a generation request gets back: a cache entry replayed, or its flight followed.

A follower streams the flight live when it asked for the flight's own form, and
otherwise waits for the end and converts. When the upstream failed before the first
byte (or answered 5xx), an expired entry still kept in Redis is served instead
(stale-if-error).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import orjson

from llm_gateway.asgi_io import Reply, StreamCut
from llm_gateway.cache.entry import Entry
from llm_gateway.cache.forms import convert
from llm_gateway.errors import JSON_TYPE, GatewayError, error_body
from llm_gateway.flight import Flight
from llm_gateway.observe import RequestRecord
from llm_gateway.plans import Wanted
from llm_gateway.routing.shed import Shed
from llm_gateway.upstream import UpstreamFailure
from llm_gateway.vocabulary import Form, Kind, now_ms


async def _through(flight: Flight) -> AsyncIterator[bytes]:
    """The flight's chunks as they come; cut (no clean end) if the upstream failed."""
    async for chunk in flight.follow():
        yield chunk
    if flight.failure is not None:
        raise StreamCut(flight.failure.message)


def _upstream_error(kind: Kind, status: int, flight: Flight, headers: dict[str, str]) -> Reply:
    """Ollama's own error answer (404 unknown model, 500 ...) as is; anything else (an
    HTML page from a proxy, a 204, junk) becomes a JSON error with the same meaning."""
    body = flight.body
    if 400 <= status < 600 and _is_error_object(body):
        return Reply(status, headers, body, JSON_TYPE)
    answered = 502 if status < 400 or status > 599 else status
    message = f"upstream answered {status} ({flight.content_type or 'no content type'})"
    return Reply(answered, headers, error_body(answered, message, kind.is_openai), JSON_TYPE)


def _is_error_object(body: bytes) -> bool:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and "error" in value


def failure_error(failure: UpstreamFailure | Shed) -> GatewayError:
    """The client's error for a flight that got no answer (a shed carries its estimate)."""
    extra = {}
    if failure.retry_after is not None:
        extra["Retry-After"] = str(max(1, math.ceil(failure.retry_after)))
    elif failure.status in (503, 504):
        extra["Retry-After"] = "5"
    return GatewayError(failure.status, failure.message, extra)


def replay(
    kind: Kind, entry: Entry, wanted: Wanted, label: str, headers: dict[str, str]
) -> Reply | None:
    """The entry in the form the client wants (None if it cannot be converted)."""
    content = convert(kind, entry.form, entry.body, wanted.form, wanted.include_usage)
    if content is None:
        return None
    age = str(entry.age_seconds(now_ms()))
    return Reply(200, {**headers, "X-Cache": label, "Age": age}, content, wanted.form.content_type)


def _stale(
    kind: Kind, stale: Entry | None, wanted: Wanted, record: RequestRecord, headers: dict[str, str]
) -> Reply | None:
    if stale is None:
        return None
    reply = replay(kind, stale, wanted, "STALE", headers)
    if reply is not None:
        record.cache = "STALE"
    return reply


async def follow(
    flight: Flight,
    kind: Kind,
    wanted: Wanted,
    stale: Entry | None,
    record: RequestRecord,
    headers: dict[str, str],
) -> Reply:
    await flight.wait_started()
    status = flight.status
    if status is None or status >= 500:
        fallback = _stale(kind, stale, wanted, record, headers)
        if fallback is not None:
            return fallback
        if status is None:
            assert flight.failure is not None
            error = failure_error(flight.failure)
            body = error_body(error.status, error.message, kind.is_openai)
            return Reply(error.status, {**headers, **error.headers}, body)
    if status != 200:
        await flight.wait_done()
        return _upstream_error(kind, status, flight, headers)
    same_form = wanted.form is flight.form and (
        wanted.form is not Form.SSE or wanted.include_usage == flight.include_usage
    )
    if same_form and wanted.form is not Form.JSON:
        return Reply(200, headers, content_type=flight.content_type, stream=flight.follow())
    if same_form:
        await flight.wait_done_or_oversized()
        if not flight.done:
            # Bigger than the cache may keep: streamed through, never held whole.
            return Reply(200, headers, content_type=flight.content_type, stream=_through(flight))
    await flight.wait_done()
    if not flight.complete:
        fallback = _stale(kind, stale, wanted, record, headers)
        if fallback is not None:
            return fallback
        message = flight.failure.message if flight.failure else "upstream response incomplete"
        return Reply(502, headers, error_body(502, message, kind.is_openai), JSON_TYPE)
    content = convert(kind, flight.form, flight.body, wanted.form, wanted.include_usage)
    if content is None:
        message = "cannot convert the upstream response"
        return Reply(502, headers, error_body(502, message, kind.is_openai))
    return Reply(200, headers, content, wanted.form.content_type)
