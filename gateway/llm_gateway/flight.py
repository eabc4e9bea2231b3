"""One upstream call whose response any number of identical requests share.

The call runs in its own task, owned by the flight rather than by the request that
started it: every request (the first one included) follows the flight, streaming
followers get each chunk as it arrives, and the call is cancelled only when the
last follower has gone. That is request coalescing (singleflight) and cancellation
on disconnect in one mechanism.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from llm_gateway.cache.completeness import Usage
from llm_gateway.cache.entry import Form
from llm_gateway.routing.shed import Shed
from llm_gateway.upstream import UpstreamFailure


class Flight:
    def __init__(self, key: str | None, form: Form, include_usage: bool = False) -> None:
        self.key = key
        # The form the upstream was asked for (that of the request that launched it).
        self.form = form
        self.include_usage = include_usage
        self.status: int | None = None
        self.content_type = ""
        self.chunks: list[bytes] = []
        self.done = False
        self.complete = False
        # Why it ended without an answer: Ollama failed, or the gateway shed the request.
        self.failure: UpstreamFailure | Shed | None = None
        self.followers = 0
        self.upstream_seconds = 0.0
        # Time the launching request waited in the dispatcher's queue.
        self.queued_seconds = 0.0
        self.usage: Usage | None = None
        # Futures of readers waiting for the next change (cheaper than an Event each).
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._on_landed: list[Callable[[], None]] = []
        self._landed = False

    # -- the writer side (the flight's task) --------------------------------------

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _changed(self) -> asyncio.Future[None]:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def started(self, status: int, content_type: str) -> None:
        self.status, self.content_type = status, content_type
        self._notify()

    def publish(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._notify()

    def fail(self, failure: UpstreamFailure | Shed) -> None:
        self.failure = failure
        self._finish(False)

    def finish(self, complete: bool) -> None:
        self._finish(complete)

    def _finish(self, complete: bool) -> None:
        if self.done:
            return
        self.done, self.complete = True, complete
        self._notify()

    def on_landed(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the flight's task has ended (after it stored the entry)."""
        self._on_landed.append(callback)

    def launch(self, run: Callable[[Flight], Awaitable[None]]) -> None:
        async def guarded() -> None:
            try:
                await run(self)
            except asyncio.CancelledError:
                self._finish(False)
                raise
            finally:
                self._land()

        task = self._task = asyncio.get_running_loop().create_task(guarded())
        # A task cancelled before its first step never runs `guarded`, finally included.
        task.add_done_callback(lambda _: self._land())

    def _land(self) -> None:
        if self._landed:
            return
        self._landed = True
        self._finish(self.complete)
        for callback in self._on_landed:
            callback()

    # -- the reader side (each request) -------------------------------------------

    def join(self) -> None:
        self.followers += 1

    def leave(self) -> None:
        self.followers -= 1
        if self.followers <= 0 and not self.done and self._task is not None:
            self._task.cancel()

    async def wait_started(self) -> None:
        """Until status and headers are known (or the call failed before them)."""
        while self.status is None and not self.done:
            await self._changed()

    async def wait_done(self) -> None:
        while not self.done:
            await self._changed()

    async def follow(self) -> AsyncIterator[bytes]:
        """Every chunk, from the first, as soon as it exists."""
        sent = 0
        while True:
            while sent < len(self.chunks):
                yield self.chunks[sent]
                sent += 1
            if self.done:
                return
            await self._changed()

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class FlightRegistry:
    """Flights in progress, by cache key: an identical request joins instead of calling."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}

    def get(self, key: str) -> Flight | None:
        return self._flights.get(key)

    def add(self, flight: Flight) -> None:
        key = flight.key
        if key is None:
            return
        self._flights[key] = flight

        def forget() -> None:
            if self._flights.get(key) is flight:
                del self._flights[key]

        flight.on_landed(forget)

    def __len__(self) -> int:
        return len(self._flights)

    async def cancel_all(self) -> None:
        for flight in list(self._flights.values()):
            await flight.cancel()
