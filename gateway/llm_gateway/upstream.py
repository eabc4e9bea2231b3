"""The one pooled HTTP client to Ollama, and the timeouts that bound each phase of a call.

Connect, first byte (headers; generous, a cold model load takes tens of seconds),
idle between streamed chunks, and total are separate: a slow first token is normal,
a stream that stalls mid-way is not.

Why not httpx (the obvious choice) or aiohttp: on this project's reference machine
one non-streamed call to the emulator costs 0.80 ms of CPU through httpx (httpcore
transport), 0.55 ms through httpx on an aiohttp transport and 0.18 ms through
aiohttp, and aiohttp was still a quarter of the gateway's CPU per miss. The client
is `http1.Pool` (see there for what it saved), behind this module's small interface.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from llm_gateway.http1 import (
    Bounds,
    ConnectionLost,
    ConnectTimeout,
    Pool,
    ProtocolError,
    Response,
    ResponseTimeout,
    Sent,
)
from llm_gateway.settings import Settings

# Bytes a request target cannot carry on the wire (controls, space, DEL).
_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")
# Request headers worth passing on; client keys and hop-by-hop headers are not.
_FORWARD_REQUEST_HEADERS = ("content-type", "accept", "user-agent", "x-request-id")


class UpstreamFailure(Exception):
    """The upstream could not be used; `reason` labels metrics, `status` is what we answer."""

    def __init__(self, reason: str, status: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    first_byte: float
    idle: float
    total: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Timeouts:
        return cls(
            connect=settings.connect_timeout_seconds,
            first_byte=settings.first_byte_timeout_seconds,
            idle=settings.idle_timeout_seconds,
            total=settings.total_timeout_seconds,
        )


def _timed_out(timeout: ResponseTimeout, timeouts: Timeouts) -> UpstreamFailure:
    if timeout.phase == "first_byte":
        message = f"upstream sent no response within {timeouts.first_byte:g}s"
    elif timeout.phase == "idle":
        message = f"upstream sent nothing for {timeouts.idle:g}s"
    else:
        message = f"upstream exceeded the total time limit ({timeouts.total:g}s)"
    return UpstreamFailure("timeout", 504, message)


def _failure(exc: BaseException, timeouts: Timeouts) -> UpstreamFailure | None:
    """What an error of the HTTP client means for the caller; None for anything else."""
    if isinstance(exc, ConnectTimeout):
        return UpstreamFailure(
            "connect", 503, f"upstream did not accept a connection within {timeouts.connect:g}s"
        )
    if isinstance(exc, ResponseTimeout):  # no response head within its bound
        return _timed_out(exc, timeouts)
    if isinstance(exc, ConnectionLost | ProtocolError):
        return UpstreamFailure("protocol", 502, f"upstream failed: {exc}")
    if isinstance(exc, OSError):  # refused, unreachable, name not resolved
        return UpstreamFailure("connect", 503, f"upstream unreachable: {exc}")
    return None


class UpstreamResponse:
    """An open upstream response: status and headers now, body chunks as they arrive."""

    def __init__(self, response: Response, timeouts: Timeouts):
        self._response = response
        self._timeouts = timeouts
        self.status = response.status
        content_type = response.header(b"content-type")
        self.content_type = content_type.decode("latin-1") if content_type else "application/json"

    async def chunks(self) -> AsyncIterator[bytes]:
        # The idle and total bounds are the connection's (http1.Bounds).
        response = self._response
        while True:
            try:
                chunk = await response.next_chunk()
            except ResponseTimeout as timeout:
                raise _timed_out(timeout, self._timeouts) from None
            except (ConnectionLost, ProtocolError) as exc:
                raise UpstreamFailure("stream", 502, f"upstream connection lost: {exc}") from None
            if not chunk:
                return
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        # Back to the pool when complete; abandoned mid-way, the connection is dropped,
        # so Ollama sees the client go and stops generating.
        self._response.release()


class Upstream:
    """Calls to Ollama over one connection pool (opened at start-up, closed at shutdown)."""

    def __init__(self, settings: Settings) -> None:
        self.timeouts = Timeouts.from_settings(settings)
        # Settings has checked the URL: http(s), a host, a valid port.
        base = urlsplit(settings.upstream_url)
        tls = base.scheme == "https"
        default_port = 443 if tls else 80
        self._host = base.hostname or ""
        self._port = base.port or default_port
        self._tls = tls
        self._prefix = base.path.rstrip("/")
        host = self._host if ":" not in self._host else f"[{self._host}]"
        authority = host if self._port == default_port else f"{host}:{self._port}"
        self._host_header = f"host: {authority}\r\n".encode("latin-1")
        self._max_connections = settings.upstream_max_connections
        self._pool: Pool | None = None

    async def start(self) -> None:
        self._pool = Pool(
            self._host,
            self._port,
            tls=self._tls,
            limit=self._max_connections,
            connect_timeout=self.timeouts.connect,
            bounds=Bounds(self.timeouts.first_byte, self.timeouts.idle, self.timeouts.total),
        )

    def begin(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        query: str = "",
    ) -> UpstreamCall:
        """The call, its request already written when a kept connection is free.

        Sending from the caller's own turn of the event loop, rather than from the task
        that will read the answer, puts the request on the wire one loop pass sooner.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("Upstream.start() was not called")
        # The path is passed on as the client sent it (percent-encoding kept).
        target = f"{self._prefix}{path}?{query}" if query else f"{self._prefix}{path}"
        if not target.startswith("/") or _UNSENDABLE.search(target):
            failure = UpstreamFailure(
                "request", 400, f"cannot forward this request path: {target!r}"
            )
            return UpstreamCall(pool, self.timeouts, (method, target, b"", b""), None, failure)
        lines = [self._host_header]
        for name in _FORWARD_REQUEST_HEADERS:
            value = headers.get(name)
            if value is not None:
                lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
        request = (method, target, b"".join(lines), body or b"")
        return UpstreamCall(pool, self.timeouts, request, pool.send_now(*request))

    async def open(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        query: str = "",
    ) -> UpstreamResponse:
        """Send the request and wait for the response headers (the first byte)."""
        return await self.begin(method, path, body, headers, query).response()

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


class UpstreamCall:
    """One call to the upstream: its request sent (or about to be), its answer awaited.

    Whoever began a call either awaits `response()` or calls `abandon()`, so that a
    request already written never holds its connection and pool slot for nothing.
    """

    __slots__ = ("_failure", "_pool", "_request", "_sent", "_timeouts")

    def __init__(
        self,
        pool: Pool,
        timeouts: Timeouts,
        request: tuple[str, str, bytes, bytes],
        sent: Sent | None,
        failure: UpstreamFailure | None = None,
    ) -> None:
        self._pool = pool
        self._timeouts = timeouts
        self._request = request
        self._sent = sent
        self._failure = failure

    async def response(self) -> UpstreamResponse:
        if self._failure is not None:
            raise self._failure
        try:
            if self._sent is None:
                self._sent = await self._pool.send(*self._request)
            response = await self._sent.response()
        except Exception as exc:
            failure = _failure(exc, self._timeouts)
            if failure is None:
                raise
            raise failure from None
        return UpstreamResponse(response, self._timeouts)

    def abandon(self) -> None:
        if self._sent is not None:
            self._sent.abandon()
