"""Redis commands issued in one turn of the event loop leave together, as one redis-py
pipeline (no transaction): one write, one connection from the pool, replies in order.

Why: under load every request makes a Redis call at about the same moment, and
redis-py's per-command path (a pooled connection taken and given back, a readiness
check, a write, a read, each awaited) is most of its cost. Measured with
bench/redis_batching.py on this project's 2-core VM (the admission script's shape,
EVALSHA of a GET; three runs, while other work loaded the machine): 44-56 µs of CPU
per call one by one at 16 concurrent callers, 28-33 µs batched; 45-53 against
20-22 µs at 32 callers; with one caller 54-67 against 57-76 µs (a batch of one is a
plain command after one pass of the loop).

Error replies stay per command (`raise_on_error=False`): one WRONGTYPE or NOSCRIPT
fails its own caller only. A lost connection or a timeout fails the whole batch.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis

Command = tuple[Any, ...]


class BatchingClient:
    """`execute(*args)` like redis-py's `execute_command`, batched per loop turn.

    The first caller of a turn leads: it lets the turn's other callers join (one pass
    of the loop), then runs the batch itself and hands each follower its reply. No
    task per batch, and a batch of one is a plain `execute_command`.
    """

    __slots__ = ("_client", "_forming")

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        # The followers of the batch being formed in this turn (None: no batch forming).
        self._forming: list[tuple[Command, asyncio.Future[Any]]] | None = None

    async def execute(self, *args: Any) -> Any:
        forming = self._forming
        if forming is not None:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            forming.append((args, future))
            return await future
        followers: list[tuple[Command, asyncio.Future[Any]]] = []
        self._forming = followers
        try:
            await asyncio.sleep(0)  # this turn's other callers join now
        except asyncio.CancelledError:
            # The leader is cancelled before its batch went out: whoever joined it is
            # still owed a reply, so their commands go without the leader's own.
            if followers:
                asyncio.ensure_future(self._run(None, followers)).add_done_callback(_retrieve)
            raise
        finally:
            self._forming = None
        if not followers:
            return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]
        run = asyncio.ensure_future(self._run(args, followers))
        try:
            return await asyncio.shield(run)
        except asyncio.CancelledError:
            # The leader gave up; the batch still runs to its end for the followers.
            run.add_done_callback(_retrieve)
            raise

    async def _run(
        self, own: Command | None, followers: list[tuple[Command, asyncio.Future[Any]]]
    ) -> Any:
        """The batch as one pipeline; `own` (the leader's command, None when the leader
        was cancelled) first, its reply returned, each follower's settled."""
        pipeline = self._client.pipeline(transaction=False)
        if own is not None:
            pipeline.execute_command(*own)
        for args, _ in followers:
            pipeline.execute_command(*args)
        try:
            results = await pipeline.execute(raise_on_error=False)
        except Exception as exc:
            for _, future in followers:
                _settle(future, exc)
            raise
        skip = 0 if own is None else 1
        for (_, future), result in zip(followers, results[skip:], strict=True):
            _settle(future, result)
        if own is None:
            return None
        if isinstance(results[0], BaseException):
            raise results[0]
        return results[0]


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # seen: no "exception was never retrieved" warning


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the caller gave up (cancelled)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
