"""The one pooled HTTP client to Ollama, and the timeouts that bound each phase of a call.

Connect, first byte (headers; generous, a cold model load takes tens of seconds),
idle between streamed chunks, and total are separate: a slow first token is normal,
a stream that stalls mid-way is not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx

from llm_gateway.settings import Settings

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


class UpstreamResponse:
    """An open upstream response: status and headers now, body chunks as they arrive."""

    def __init__(self, response: httpx.Response, timeouts: Timeouts, deadline: float) -> None:
        self._response = response
        self._timeouts = timeouts
        self._deadline = deadline
        self.status = response.status_code
        self.content_type = response.headers.get("content-type", "application/json")

    async def chunks(self) -> AsyncIterator[bytes]:
        iterator = self._response.aiter_raw().__aiter__()
        idle = self._timeouts.idle
        while True:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamFailure("timeout", 504, "upstream exceeded the total time limit")
            try:
                async with asyncio.timeout(min(idle, remaining)):
                    chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise UpstreamFailure(
                    "timeout", 504, f"upstream sent nothing for {min(idle, remaining):.0f}s"
                ) from None
            except httpx.HTTPError as exc:
                raise UpstreamFailure("stream", 502, f"upstream connection lost: {exc}") from None
            if chunk:
                yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        await self._response.aclose()


class Upstream:
    """Calls to Ollama over one connection pool (created once, closed at shutdown)."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.timeouts = Timeouts.from_settings(settings)
        limits = httpx.Limits(
            max_connections=settings.upstream_max_connections,
            max_keepalive_connections=settings.upstream_max_connections,
            keepalive_expiry=30.0,
        )
        # Reads are bounded by our own first-byte and idle timers, not httpx's.
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_seconds,
            read=None,
            write=settings.connect_timeout_seconds,
            pool=settings.first_byte_timeout_seconds,
        )
        self._client = httpx.AsyncClient(
            base_url=settings.upstream_url,
            limits=limits,
            timeout=timeout,
            transport=transport,
            trust_env=False,
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
        forwarded = {name: headers[name] for name in _FORWARD_REQUEST_HEADERS if name in headers}
        url = f"{path}?{query}" if query else path
        try:
            request = self._client.build_request(method, url, content=body, headers=forwarded)
        except (httpx.InvalidURL, ValueError) as exc:
            raise UpstreamFailure("request", 400, f"cannot forward this request: {exc}") from None
        started = time.monotonic()
        deadline = started + self.timeouts.total
        try:
            async with asyncio.timeout(self.timeouts.first_byte):
                response = await self._client.send(request, stream=True)
        except TimeoutError:
            raise UpstreamFailure(
                "timeout",
                504,
                f"upstream sent no response within {self.timeouts.first_byte:.0f}s",
            ) from None
        except httpx.ConnectTimeout:
            raise UpstreamFailure(
                "connect", 503, f"upstream did not accept a connection within "
                f"{self.timeouts.connect:.0f}s"
            ) from None  # fmt: skip
        except httpx.ConnectError as exc:
            raise UpstreamFailure("connect", 503, f"upstream unreachable: {exc}") from None
        except httpx.HTTPError as exc:
            raise UpstreamFailure("protocol", 502, f"upstream failed: {exc}") from None
        return UpstreamResponse(response, self.timeouts, deadline)

    async def aclose(self) -> None:
        await self._client.aclose()
