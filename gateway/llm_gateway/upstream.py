"""The one pooled HTTP client to Ollama, and the timeouts that bound each phase of a call.

Connect, first byte (headers; generous, a cold model load takes tens of seconds),
idle between streamed chunks, and total are separate: a slow first token is normal,
a stream that stalls mid-way is not.

Why aiohttp and not httpx: on this project's reference machine one non-streamed call
to the emulator costs 0.80 ms of CPU through httpx (httpcore transport), 0.55 ms
through httpx on an aiohttp transport, and 0.18 ms through aiohttp directly
(bench numbers in the README). httpx was the gateway's bottleneck on misses, so the
upstream client is aiohttp's pooled session, behind this module's small interface.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from llm_gateway.settings import Settings

# Request headers worth passing on; client keys and hop-by-hop headers are not.
_FORWARD_REQUEST_HEADERS = ("content-type", "accept", "user-agent", "x-request-id")
# Byte-exact relay: never ask Ollama to compress, never add a client User-Agent.
_SKIP_AUTO_HEADERS = ("Accept-Encoding", "User-Agent")


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


class UpstreamResponse:
    """An open upstream response: status and headers now, body chunks as they arrive."""

    def __init__(self, response: aiohttp.ClientResponse, timeouts: Timeouts, deadline: float):
        self._response = response
        self._timeouts = timeouts
        self._deadline = deadline
        self._finished = False
        self.status = response.status
        self.content_type = response.headers.get("Content-Type", "application/json")

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._response.content
        idle = self._timeouts.idle
        while True:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamFailure("timeout", 504, "upstream exceeded the total time limit")
            wait = min(idle, remaining)
            try:
                async with asyncio.timeout(wait):
                    chunk = await content.readany()
            except TimeoutError:
                raise UpstreamFailure(
                    "timeout", 504, f"upstream sent nothing for {wait:.0f}s"
                ) from None
            except aiohttp.ClientError as exc:
                raise UpstreamFailure("stream", 502, f"upstream connection lost: {exc}") from None
            if not chunk:
                if not content.is_eof():
                    raise UpstreamFailure("stream", 502, "upstream connection lost")
                self._finished = True
                return
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        if self._finished:
            self._response.release()  # back to the pool
        else:
            # Abandoned mid-way: drop the connection, so Ollama sees the client go and
            # stops generating.
            self._response.close()


class Upstream:
    """Calls to Ollama over one connection pool (opened at start-up, closed at shutdown)."""

    def __init__(self, settings: Settings) -> None:
        self.timeouts = Timeouts.from_settings(settings)
        self._base = settings.upstream_url
        self._max_connections = settings.upstream_max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, keepalive_timeout=30, use_dns_cache=True
        )
        timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=self.timeouts.connect, sock_read=None
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            trust_env=False,
            # One session serves every client: a cookie set on one answer must not ride
            # along on other clients' requests (and not storing them saves work).
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def open(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str],
        query: str = "",
    ) -> UpstreamResponse:
        """Send the request and wait for the response headers (the first byte)."""
        session = self._session
        if session is None:
            raise RuntimeError("Upstream.start() was not called")
        forwarded = {name: headers[name] for name in _FORWARD_REQUEST_HEADERS if name in headers}
        try:
            # The path is passed on as the client sent it (percent-encoding kept).
            url = URL(
                f"{self._base}{path}?{query}" if query else f"{self._base}{path}", encoded=True
            )
        except ValueError as exc:
            raise UpstreamFailure("request", 400, f"cannot forward this request: {exc}") from None
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeouts.first_byte):
                response = await session.request(
                    method, url, data=body, headers=forwarded, allow_redirects=False
                )
        except aiohttp.ServerTimeoutError:  # aiohttp's own: the connect timeout
            raise UpstreamFailure(
                "connect", 503,
                f"upstream did not accept a connection within {self.timeouts.connect:.0f}s",
            ) from None  # fmt: skip
        except TimeoutError:  # ours: no response headers within the first-byte bound
            raise UpstreamFailure(
                "timeout", 504,
                f"upstream sent no response within {self.timeouts.first_byte:.0f}s",
            ) from None  # fmt: skip
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamFailure("connect", 503, f"upstream unreachable: {exc}") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise UpstreamFailure("protocol", 502, f"upstream failed: {exc}") from None
        return UpstreamResponse(response, self.timeouts, started + self.timeouts.total)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
