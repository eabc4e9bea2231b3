"""Calls to one Ollama (or the nginx balancer in front of several) over a pooled aiohttp
session, and the time bounds of each phase of a call.

Connect, first byte (headers; generous, a cold model load takes tens of seconds),
idle between streamed chunks, and total are separate bounds, each named in its error:
a slow first token is normal, a stream that stalls mid-way is not.

aiohttp owns the protocol: its C parser skips 1xx interim responses, reads chunked,
close-delimited and trailer-carrying bodies, and speaks TLS and IPv6. One session per
upstream, opened at start-up, with a pool that never reuses a connection the peer
wrote to while idle (`http_pool.py`). A request is sent again once, only when a kept
connection turns out to be stale before any byte of its answer came back.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from llm_gateway.http_pool import REUSED, StrictReuseConnector

# Bytes a request target cannot carry on the wire (controls, space, DEL).
_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")
# Request headers worth passing on; client keys and hop-by-hop headers are not.
# A client's trace context goes on too (tracing on: the gateway's own span replaces it).
_FORWARD_REQUEST_HEADERS = (
    "content-type", "accept", "user-agent", "x-request-id", "traceparent", "tracestate",
)  # fmt: skip
# aiohttp would add these on its own; Ollama gets what the client sent, or nothing.
# (No Accept-Encoding above all: the gateway relays and caches the bytes as they come.)
_NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
# Idle kept connections are closed after this long; nginx keeps its side 60 s by default.
_KEEPALIVE_SECONDS = 30.0


class UpstreamFailure(Exception):
    """The upstream could not be used; `reason` labels metrics, `status` is what we answer."""

    def __init__(
        self, reason: str, status: int, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.message = message
        # Seconds a client should wait before trying again, when known.
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    first_byte: float
    idle: float
    total: float

    def first_byte_failure(self, total: bool) -> UpstreamFailure:
        if total:
            return self.total_failure()
        message = f"upstream sent no response within {self.first_byte:g}s"
        return UpstreamFailure("timeout", 504, message)

    def idle_failure(self) -> UpstreamFailure:
        return UpstreamFailure("timeout", 504, f"upstream sent nothing for {self.idle:g}s")

    def total_failure(self) -> UpstreamFailure:
        return UpstreamFailure(
            "timeout", 504, f"upstream exceeded the total time limit ({self.total:g}s)"
        )


def _client_failure(exc: aiohttp.ClientError, timeouts: Timeouts) -> UpstreamFailure:
    """What an aiohttp error before the response head means for the caller."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamFailure(
            "connect", 503, f"upstream did not accept a connection within {timeouts.connect:g}s"
        )
    if isinstance(exc, aiohttp.ClientSSLError):  # certificate or handshake
        return UpstreamFailure("tls", 502, f"upstream TLS failed: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, no such name
        return UpstreamFailure("connect", 503, f"upstream unreachable: {exc}")
    # Disconnected or reset before an answer, or an answer that is not HTTP.
    return UpstreamFailure("protocol", 502, f"upstream failed: {exc or type(exc).__name__}")


def _stale(exc: aiohttp.ClientError) -> bool:
    """The connection died under the request before any byte of an answer came back."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # aiohttp puts the part of a response head it had read in `message`; with no
        # byte read it is the plain text "Server disconnected".
        return isinstance(exc.message, str)
    # A reset or broken pipe on the kept socket (not: could not connect at all).
    return isinstance(exc, aiohttp.ClientOSError) and not isinstance(
        exc, aiohttp.ClientConnectorError
    )


class _BodyBounds:
    """The idle and total bounds of one response body, kept by one timer.

    A streamed chunk only notes the time; the timer is re-armed when it fires early,
    not per chunk. When a bound is really exceeded while the reader waits on the
    upstream, the reading task is cancelled and `expired` says which bound it was.
    """

    __slots__ = ("_handle", "_idle", "_task", "_total_at", "expired", "last", "loop", "reading")

    def __init__(self, idle: float, total_at: float) -> None:
        self.loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._idle = idle
        self._total_at = total_at
        self.last = self.loop.time()
        self.reading = False
        self.expired: str | None = None
        self._handle = self.loop.call_at(min(self.last + idle, total_at), self._check)

    def _check(self) -> None:
        now = self.loop.time()
        if now >= self._total_at:
            phase = "total"
        elif now - self.last >= self._idle and self.reading:
            phase = "idle"
        else:
            # A chunk came since, or the reader is busy downstream: look again later.
            due = self.last + self._idle if self.reading else now + self._idle
            self._handle = self.loop.call_at(min(due, self._total_at), self._check)
            return
        self.expired = phase
        self._task.cancel()

    def cancel(self) -> None:
        self._handle.cancel()


class UpstreamResponse:
    """An open upstream response: status and headers now, body chunks as they arrive."""

    __slots__ = ("_deadline", "_response", "_timeouts", "content_type", "status")

    def __init__(self, response: aiohttp.ClientResponse, timeouts: Timeouts, deadline: float):
        self._response = response
        self._timeouts = timeouts
        self._deadline = deadline
        self.status = response.status
        self.content_type = response.headers.get("Content-Type", "application/json")

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as the upstream sends them, within the idle and total bounds."""
        content = self._response.content
        bounds = _BodyBounds(self._timeouts.idle, self._deadline)
        try:
            while True:
                bounds.reading = True
                try:
                    chunk = await content.readany()
                except asyncio.CancelledError:
                    if bounds.expired is None:
                        raise
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    if bounds.expired == "idle":
                        raise self._timeouts.idle_failure() from None
                    raise self._timeouts.total_failure() from None
                except aiohttp.ClientError as exc:
                    message = f"upstream connection lost: {exc or type(exc).__name__}"
                    raise UpstreamFailure("stream", 502, message) from None
                bounds.reading = False
                if not chunk:
                    return
                bounds.last = bounds.loop.time()
                yield chunk
        finally:
            bounds.cancel()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        # Back to the pool when read to the end; abandoned mid-way the connection is
        # dropped, so Ollama sees the client go and stops generating.
        self._response.release()


class Upstream:
    """One upstream base URL and its connection pool (opened at start-up, closed at shutdown)."""

    def __init__(
        self,
        base_url: str,
        timeouts: Timeouts,
        max_connections: int,
        ca_file: Path | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts
        self._max_connections = max_connections
        self._ca_file = ca_file
        base = URL(self.base_url)
        # host:port, for traces (server.address / server.port).
        self.authority = f"{base.host}:{base.port}"
        self._prefix = base.raw_path.rstrip("/")
        self._origin = base.origin()
        self._session: aiohttp.ClientSession | None = None
        # Request targets seen (a handful: /api/generate, /api/chat ...), built once.
        self._urls: dict[str, URL] = {}

    def _ssl(self) -> ssl.SSLContext | bool:
        if self._origin.scheme != "https":
            return True  # unused for http://
        return ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)

    async def start(self) -> None:
        connector = StrictReuseConnector(
            limit=self._max_connections,
            limit_per_host=0,
            keepalive_timeout=_KEEPALIVE_SECONDS,
            ssl=self._ssl(),
            ttl_dns_cache=10,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # The phases are bounded here (see `request`); aiohttp bounds the socket connect.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeouts.connect),
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_NO_AUTO_HEADERS,
            auto_decompress=False,
            trust_env=False,
        )

    def _target(self, path: str, query: str) -> URL:
        target = f"{self._prefix}{path}?{query}" if query else f"{self._prefix}{path}"
        url = self._urls.get(target)
        if url is not None:
            return url
        if not target.startswith("/") or _UNSENDABLE.search(target):
            raise UpstreamFailure("request", 400, f"cannot forward this request path: {target!r}")
        # Passed on as the client sent it: percent-encoding kept, nothing re-encoded.
        url = self._origin.join(URL(target, encoded=True))
        if not query and len(self._urls) < 64:  # the proxy's fixed paths, not client junk
            self._urls[target] = url
        return url

    @asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        query: str = "",
    ) -> AsyncIterator[UpstreamResponse]:
        """The upstream's response (its head read); released or dropped on leaving."""
        session = self._session
        if session is None:
            raise RuntimeError("Upstream.start() was not called")
        url = self._target(path, query)
        sent = {name: headers[name] for name in _FORWARD_REQUEST_HEADERS if name in headers}
        timeouts = self.timeouts
        deadline = asyncio.get_running_loop().time() + timeouts.total
        head_by_total = timeouts.total <= timeouts.first_byte
        response: aiohttp.ClientResponse | None = None
        for attempt in (1, 2):
            REUSED.set(False)
            try:
                async with asyncio.timeout(min(timeouts.first_byte, timeouts.total)):
                    response = await session.request(
                        method, url, data=body, headers=sent, allow_redirects=False
                    )
                break
            except aiohttp.ClientError as exc:  # (before TimeoutError: some are both)
                # A kept connection the upstream had closed: nothing of an answer came
                # back, so sending again (once, on a fresh connection) is safe.
                if attempt == 1 and REUSED.get() and _stale(exc):
                    continue
                raise _client_failure(exc, timeouts) from None
            except TimeoutError:
                raise timeouts.first_byte_failure(head_by_total) from None
        assert response is not None
        upstream_response = UpstreamResponse(response, timeouts, deadline)
        try:
            yield upstream_response
        finally:
            upstream_response.close()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
