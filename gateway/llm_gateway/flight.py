"""One upstream call whose response any number of identical requests share.

The call runs in its own task, owned by the flight rather than by the request that
started it: every request (the first one included) follows the flight, streaming
followers get each chunk as it arrives, and the call is cancelled only when the
last follower has gone. That is request coalescing (singleflight) and cancellation
on disconnect in one mechanism.

An answer bigger than `keep_bytes` (GATEWAY_CACHE_MAX_ENTRY_BYTES) is not stored and
not held whole: once it crosses the cap the flight takes no new followers, and when
every follower reads it live, the chunks they all have sent are dropped (only a tail
is kept, for the final object's counts) and the upstream is read no faster than the
slowest of them sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from llm_gateway.cache.completeness import Usage
from llm_gateway.routing.shed import Shed
from llm_gateway.upstream import UpstreamFailure
from llm_gateway.vocabulary import Form

log = logging.getLogger("llm_gateway")

# What an oversized flight keeps of what all its followers have sent: enough for the
# final NDJSON line or SSE events (the token counts, whether the answer completed).
TAIL_BYTES = 64 * 1024


class Flight:
    """One upstream call and everything its followers read of it.

    Its states, in order (each one stays true once reached):

    - launched: `launch()` started the task that makes the call; `status` is None.
    - started: `started()` recorded the answer's status and content type (the head);
      followers may now send their own head, and `publish()` adds each chunk. An
      answer that outgrows the cache's entry limit becomes `oversized` on the way:
      it is no longer kept whole, only relayed.
    - done: no chunk will come. `complete` says whether the answer arrived whole
      (`finish(True)`), or not: `finish(False)` after a failure mid-stream, or
      `fail()` with the `failure` (Ollama failed, or the gateway shed the request)
      before any head, or the task was cancelled when the last follower left.
    - landed: the task has ended, after its end-of-call work (storing the entry,
      settling the launching request's slot, tokens and usage: `settled`);
      `on_landed` callbacks run then (the registry forgets the flight, so a later
      identical request starts a new one).

    done comes before landed: followers finish their replies while the flight still
    stores what they received.
    """

    def __init__(
        self,
        key: str | None,
        form: Form,
        include_usage: bool = False,
        keep_bytes: int | None = None,
    ) -> None:
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
        # The launching request's slot, tokens and usage are settled (exactly once).
        self.settled = False
        # Futures of readers waiting for the next change (cheaper than an Event each).
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._on_landed: list[Callable[[], None]] = []
        self._landed = False
        # The size cap, the bytes published, and whether they crossed it.
        self.keep_bytes = keep_bytes
        self.size = 0
        self.oversized = False
        self._on_oversized: list[Callable[[], None]] = []
        # Oversized only: `chunks[0]` is chunk number `_base`; the live readers' next
        # chunk numbers; bytes held in `chunks`; the writer waiting for room.
        self._base = 0
        self._cursors: dict[int, int] = {}
        self._held = 0
        self._room: asyncio.Future[None] | None = None
        self._readers = 0

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
        self.size += len(chunk)
        if self.oversized:
            self._held += len(chunk)
            self._trim()
        elif self.keep_bytes is not None and self.size > self.keep_bytes:
            self.oversized, self._held = True, self.size
            for callback in self._on_oversized:
                callback()
            self._trim()
        self._notify()

    def on_oversized(self, callback: Callable[[], None]) -> None:
        self._on_oversized.append(callback)

    def _all_live(self) -> bool:
        # Exactly one reader per follower. More readers than followers: one has left
        # and its reader is not closed yet; trusting its position could hold the
        # writer for ever, so nothing is dropped and nobody waits until it is.
        return 0 < len(self._cursors) == self.followers

    def _trim(self) -> None:
        """Drop the chunks every follower has sent, but a tail (oversized only)."""
        if not self._all_live():
            return  # someone waits for the end (to convert): it needs every chunk
        sent = min(self._cursors.values()) - self._base
        drop = 0
        held = self._held
        while drop < sent and held - len(self.chunks[drop]) >= TAIL_BYTES:
            held -= len(self.chunks[drop])
            drop += 1
        if drop:
            del self.chunks[:drop]
            self._base += drop
            self._held = held

    async def room(self) -> None:
        """(The writer) wait while the live followers lag more than the cap behind."""
        limit = self.keep_bytes
        while (
            self.oversized and limit is not None and self._held > limit + TAIL_BYTES
            and self._all_live() and not self.done
        ):  # fmt: skip
            self._room = asyncio.get_running_loop().create_future()
            await self._room

    def _advanced(self, reader: int, position: int) -> None:
        self._cursors[reader] = position
        if self.oversized:
            self._trim()
            self._wake_writer()

    def _wake_writer(self) -> None:
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

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
        self._wake_writer()

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
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._land()
        if not task.cancelled() and (error := task.exception()) is not None:
            # Retrieved and said once (not "exception was never retrieved" at exit).
            log.error("flight failed: %r", error, exc_info=error)

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
        else:
            self._wake_writer()

    async def wait_started(self) -> None:
        """Until status and headers are known (or the call failed before them)."""
        while self.status is None and not self.done:
            await self._changed()

    async def wait_done(self) -> None:
        while not self.done:
            await self._changed()

    async def wait_done_or_oversized(self) -> None:
        while not self.done and not self.oversized:
            await self._changed()

    async def follow(self) -> AsyncIterator[bytes]:
        """Every chunk, from the first, as soon as it exists."""
        self._readers += 1
        reader = self._readers
        sent = self._base  # (0: nothing is dropped before every follower reads live)
        self._cursors[reader] = sent
        try:
            while True:
                while sent - self._base < len(self.chunks):
                    yield self.chunks[sent - self._base]
                    sent += 1
                    self._advanced(reader, sent)
                if self.done:
                    return
                await self._changed()
        finally:
            del self._cursors[reader]
            self._wake_writer()

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
        # Too big to keep: a new identical request could not replay it from the start.
        flight.on_oversized(forget)

    def __len__(self) -> int:
        return len(self._flights)

    async def cancel_all(self) -> None:
        for flight in list(self._flights.values()):
            await flight.cancel()
