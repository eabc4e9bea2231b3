"""Raw ASGI plumbing for the proxy routes: bounded body reads, replies, disconnects.

The proxy routes speak ASGI directly instead of going through Starlette's
Request/StreamingResponse: the body limit is enforced while reading (an oversized
body is refused before it is read whole), and a client that goes away is noticed
even while we wait for a slow first token (uvicorn silently drops writes to a
closed connection, so waiting for a failed write would never notice).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from starlette.types import Message, Receive, Scope, Send

from llm_gateway.errors import GatewayError

__all__ = [
    "ClientGone", "Message", "Receive", "Reply", "Scope", "Send", "StreamCut", "header_map",
    "read_body",
]  # fmt: skip


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers, lower-case names; the last of repeated headers wins."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise GatewayError(400, "invalid Content-Length")
        if int(declared) > limit:
            raise GatewayError(413, f"request body too large (limit {limit} bytes)")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise GatewayError(413, f"request body too large (limit {limit} bytes)")
            parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


class ClientGone(Exception):
    """The client closed the connection; nothing more to send."""


class StreamCut(Exception):
    """A body streamed through broke off upstream: end the connection without a clean
    end of body, so that the client cannot take the part for the whole."""


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    # When set, the body is streamed chunk by chunk (no Content-Length).
    stream: AsyncIterator[bytes] | None = None
    on_first_byte: Callable[[], None] | None = field(default=None, repr=False)
    # A replayed cache entry's cost (prompt + completion tokens), for hits that pay.
    tokens: int = 0

    def _raw_headers(self) -> list[tuple[bytes, bytes]]:
        raw = [(b"content-type", self.content_type.encode("latin-1"))]
        if self.stream is None:
            raw.append((b"content-length", str(len(self.body)).encode()))
        raw.extend(
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()
        )
        return raw

    async def send_to(self, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status}
        if self.stream is None:
            await send({**start, "headers": self._raw_headers()})
            if self.on_first_byte is not None:
                self.on_first_byte()
            await send({"type": "http.response.body", "body": self.body, "more_body": False})
            return
        # A stream's head leaves with its first chunk, back to back: Ollama's answer
        # arrives that way, and a client waiting for the first token wakes once.
        chunks = aiter(self.stream)
        first = await anext(chunks, None)
        await send({**start, "headers": self._raw_headers()})
        if first is not None:
            if self.on_first_byte is not None:
                self.on_first_byte()
            await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# A request answered sooner than this never starts a watcher task: most misses and
# every hit. A client that leaves earlier is still seen, as soon as the watcher starts.
WATCH_AFTER_SECONDS = 0.02


@contextlib.asynccontextmanager
async def cancel_on_disconnect(receive: Receive) -> AsyncIterator[asyncio.Event]:
    """Cancel the current task when the client disconnects; the event says whether it did.

    Only use after the request body has been read completely: from then on the
    only message `receive` can deliver is `http.disconnect`.
    """
    task = asyncio.current_task()
    assert task is not None
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                task.cancel()
                return

    watcher: asyncio.Task[None] | None = None

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(WATCH_AFTER_SECONDS, start_watching)
    try:
        yield gone
    except asyncio.CancelledError:
        if not gone.is_set():
            raise
        # The client left: swallow our own cancellation, nobody is listening.
        task.uncancel()
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
