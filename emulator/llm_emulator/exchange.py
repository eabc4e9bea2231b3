"""One HTTP request/response on the raw ASGI interface, with client-disconnect detection.

Plain ASGI keeps the per-request cost at a few microseconds. Waiting (first-token
delay, token delay, hang) and streaming go through `watch()`: a task that waits for
`http.disconnect` and cancels the request's task when the client goes away, so the
request counts as cancelled instead of running on for nobody.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from llm_emulator.state import NO_FAULTS, EmulatorState, RequestFaults

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# uvloop's timers tick in whole milliseconds, so a 50 ms sleep ends anywhere in a 1 ms
# window: noise larger than the gateway overheads the benchmark compares. The last
# stretch of a pause is waited out by yielding to the loop until the exact deadline.
_YIELD_SECONDS = 0.002


async def precise_sleep(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    if seconds > _YIELD_SECONDS:
        await asyncio.sleep(seconds - _YIELD_SECONDS)
    while time.perf_counter() < deadline:  # noqa: ASYNC110 - timers are what is too coarse
        await asyncio.sleep(0)


class Exchange:
    __slots__ = (
        "_finishing",
        "_task",
        "_watcher",
        "body",
        "cut",
        "disconnected",
        "faults",
        "method",
        "on_close",
        "path",
        "receive",
        "scope",
        "send",
        "started",
        "state",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, state: EmulatorState) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.state = state
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.body = b""
        self.faults: RequestFaults = NO_FAULTS
        self.started = False
        self.cut = False
        self.disconnected = False
        self._finishing = False
        self._task: asyncio.Task[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None
        # Runs when the request is over, answered or not (see close()).
        self.on_close: Callable[[], None] | None = None

    async def read_body(self) -> bytes:
        chunks = []
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise asyncio.CancelledError
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self.body

    # -- disconnect detection -------------------------------------------------

    def watch(self) -> None:
        """From now on, a client disconnect cancels this request's task."""
        if self._watcher is None:
            self._task = asyncio.current_task()
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
        if not self._finishing and self._task is not None:
            self.disconnected = True
            self._task.cancel()

    def close(self) -> None:
        """The request is over: like a Go handler's context ending, this releases what it held."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self.on_close is not None:
            on_close, self.on_close = self.on_close, None
            on_close()

    async def pause(self, seconds: float) -> None:
        if seconds > 0:
            self.watch()
            await precise_sleep(seconds)

    async def hang(self) -> None:
        """Never answer; only the client leaving (or shutdown) ends this."""
        self.watch()
        await asyncio.Event().wait()

    # -- responses ------------------------------------------------------------

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        head_only: bool = False,
    ) -> None:
        all_headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
        ]
        if headers:
            all_headers.extend(headers)
        self._finishing = True
        await self.send({"type": "http.response.start", "status": status, "headers": all_headers})
        await self.send({"type": "http.response.body", "body": b"" if head_only else body})

    async def start_stream(self, content_type: bytes, status: int = 200) -> None:
        self.watch()
        self.started = True
        headers = [(b"content-type", content_type)]
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end_stream(self, data: bytes = b"") -> None:
        self._finishing = True
        await self.send({"type": "http.response.body", "body": data, "more_body": False})

    def abort(self) -> None:
        """Give up mid-stream: the server closes the socket without the final chunk."""
        self.cut = True
