"""What one request did, recorded once at its end: metrics and one JSON log line."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

import orjson
from prometheus_client import Counter, Histogram

from llm_gateway.metrics import NO_KEY, OTHER_MODEL, GatewayMetrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# New ids: a random per-process prefix and a counter, unique without a syscall each.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is safe to echo and log, else a new one."""
    if header and _REQUEST_ID.match(header):
        return header
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    endpoint: str
    started: float
    model: str = OTHER_MODEL
    key: str = NO_KEY
    cache: str = "-"
    status: int = 0
    first_byte_at: float = 0.0
    upstream_seconds: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prompt_text: str | None = None
    # The semantic lookup, and the embedding call inside it (0: none made).
    semantic_seconds: float = 0.0
    embed_seconds: float = 0.0

    def mark_first_byte(self) -> None:
        if not self.first_byte_at:
            self.first_byte_at = time.perf_counter()


class AccessLog:
    """One JSON line per request on a stream (stdout by default).

    Lines are buffered and flushed by `run_flusher` every `interval` seconds (and at
    shutdown), not one syscall per request.
    """

    def __init__(self, enabled: bool, stream: IO[bytes] | None = None, interval: float = 0.2):
        self.enabled = enabled
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._interval = interval
        self._pending: list[bytes] = []

    def write(self, line: dict[str, object]) -> None:
        if self.enabled:
            self._pending.append(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self._stream.write(b"".join(pending))
            self._stream.flush()

    async def run_flusher(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._interval)
                self.flush()
        finally:
            self.flush()


@dataclass(frozen=True, slots=True)
class _Series:
    """The labelled series one shape of request (model, endpoint, status, cache) updates."""

    requests: Counter
    duration: Histogram
    outcome: Counter | None  # hits, misses, coalesced or stale served, by the cache result
    first_token: Histogram
    upstream: Histogram
    overhead: Histogram

    @classmethod
    def of(cls, m: GatewayMetrics, model: str, endpoint: str, status: int, cache: str) -> _Series:
        outcome = {
            "HIT": m.cache_hits, "MISS": m.cache_misses, "COALESCED": m.coalesced,
            "STALE": m.stale_served,
        }.get(cache)  # fmt: skip
        return cls(
            m.requests.labels(model, endpoint, str(status)),
            m.request_duration.labels(model, endpoint, cache),
            outcome.labels(model, endpoint) if outcome is not None else None,
            m.time_to_first_token.labels(model, endpoint),
            m.upstream_duration.labels(endpoint),
            m.overhead.labels(endpoint),
        )


class Recorder:
    def __init__(self, metrics: GatewayMetrics, access_log: AccessLog) -> None:
        self.metrics = metrics
        self.access_log = access_log
        # Looking series up by label values costs a few µs each, seven times a request;
        # the shapes are few (every label is bounded), so each is looked up once.
        self._series: dict[tuple[str, str, int, str], _Series] = {}

    def start(self, request_id: str, method: str, path: str, endpoint: str) -> RequestRecord:
        self.metrics.in_flight.inc()
        return RequestRecord(request_id, method, path, endpoint, time.perf_counter())

    def finish(self, record: RequestRecord) -> None:
        self.metrics.in_flight.dec()
        duration = time.perf_counter() - record.started
        endpoint, model, cache = record.endpoint, record.model, record.cache
        shape = (model, endpoint, record.status, cache)
        series = self._series.get(shape)
        if series is None:
            series = self._series[shape] = _Series.of(self.metrics, *shape)
        series.requests.inc()
        series.duration.observe(duration)
        if series.outcome is not None:
            series.outcome.inc()
        ttft = record.first_byte_at - record.started if record.first_byte_at else None
        if ttft is not None and record.status == 200:
            series.first_token.observe(ttft)
        if record.upstream_seconds:
            series.upstream.observe(record.upstream_seconds)
            series.overhead.observe(max(0.0, duration - record.upstream_seconds))
        if self.access_log.enabled:
            line: dict[str, object] = {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "request_id": record.request_id,
                "key": record.key,
                "method": record.method,
                "path": record.path,
                "endpoint": endpoint,
                "model": model,
                "status": record.status,
                "cache": cache,
                "duration_ms": round(duration * 1000, 3),
                "ttft_ms": round(ttft * 1000, 3) if ttft is not None else None,
                "upstream_ms": round(record.upstream_seconds * 1000, 3),
                "prompt_tokens": record.prompt_tokens,
                "tokens": record.generated_tokens,
            }
            if record.semantic_seconds:
                line["semantic_ms"] = round(record.semantic_seconds * 1000, 3)
                line["embed_ms"] = round(record.embed_seconds * 1000, 3)
            if record.prompt_text is not None:
                line["prompt"] = record.prompt_text
            self.access_log.write(line)
