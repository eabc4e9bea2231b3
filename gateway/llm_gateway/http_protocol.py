"""uvicorn's httptools protocol, with a response's head and body sent in one write.

uvicorn writes a response's head and its body separately: two `send()` syscalls per
response, and two segments the client wakes up for. Here a write is held until the
next one (which then leaves with it, at once) or until the end of the event-loop
turn: a whole response leaves in one write with no added delay, and a stream's
head, waiting for its first chunk, leaves after one pass of the loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes are buffered until the end of the event-loop turn."""

    __slots__ = ("_loop", "_outbox", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._outbox: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._outbox:
            # A head waiting for its body (or a chunk for the next): both leave now.
            self._outbox.append(data)
            self.flush()
            return
        self._outbox.append(data)
        self._loop.call_soon(self.flush)

    def flush(self) -> None:
        if not self._outbox:
            return
        outbox, self._outbox = self._outbox, []
        if not self._transport.is_closing():
            self._transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._outbox.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # Everything else (flow control, extra info, is_closing) is the real transport's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(coalescing)  # type: ignore[arg-type]
