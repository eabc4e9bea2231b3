"""Scripted HTTP/1.1 servers on loopback, for testing the gateway's clients byte by byte.

`serve` runs on the test's own event loop (for tests that drive a client in-process);
`ThreadedServer` runs the same server on an event loop of its own in a thread, for
tests whose client is another process (a gateway) driven by blocking calls.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from tests.support.ports import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
T = TypeVar("T")


class Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.connections = 0
        self.open: set[asyncio.StreamWriter] = set()


@asynccontextmanager
async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """A server that runs `handler` on each connection, counting connections."""
    server = Server(free_port())

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        server.open.add(writer)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            server.open.discard(writer)
            writer.close()

    listener = await asyncio.start_server(on_connection, "127.0.0.1", server.port, ssl=tls)
    try:
        yield server
    finally:
        listener.close()


class ThreadedServer:
    """`serve(handler)` on its own event loop in a daemon thread, while in a `with`."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._tls = tls
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._server: Server | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scripted-http", daemon=True)

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not running"
        return self._server.port

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        assert self._server is not None, "the server is not running"
        return self._server.connections

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run `coroutine` on the server's loop (from the test's thread) and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to the thread that started it
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handler, self._tls) as server:
            self._server = server
            self._ready.set()
            await self._stop.wait()
            # Handlers waiting on a kept connection end when it closes under them.
            for writer in list(server.open):
                writer.transport.abort()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=5)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None or self._server is None:
            raise RuntimeError(f"scripted server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        stop = self._stop
        if stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)
