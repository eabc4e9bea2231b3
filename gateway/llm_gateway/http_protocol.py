"""uvicorn's httptools protocol, with the writes of one event-loop turn sent as one.

uvicorn writes a response's head and its body separately: two `send()` syscalls per
response, and two segments the client wakes up for. Here both leave together,
as do the head and first chunk of a stream, and chunks that arrive in the same
turn. The cost is one pass of the event loop (microseconds) before bytes leave.
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
        if not self._outbox:
            self._loop.call_soon(self.flush)
        self._outbox.append(data)

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
