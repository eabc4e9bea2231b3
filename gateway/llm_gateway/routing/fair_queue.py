"""Requests waiting for a slot: strict priority between classes, weighted fair between keys.

Within a priority class, start-time fair queueing (SFQ): a request of key k gets the
start tag `max(V - burst, last_finish[k])` and its key's next request starts
`1 / weight` later, where V is the start tag of the last request dispatched in that
class. A key that floods the queue pushes only its own requests into the virtual
future; a key that sends a steady trickle keeps starting near V and goes first.
Weights come from the keys file (`weight`, default 1).

`burst` is the credit a key under its fair share banks: V runs ahead of its last
finish while the backlogged keys are served more than it, and up to `burst` requests
of that lead are kept. Plain SFQ (`burst` 0) forgets it at once, so a light key that
sends a few requests together gets only an even split of the slots against a flooding
key and waits behind its requests already queued; with the credit its burst goes
first, up to `burst` requests (weight 1; a key of weight w banks w x `burst`), and
the flooding key, always backlogged, never banks any. `bench/fair_burst.py` measures
the trade on this class.

The credit is spent only while another key floods the class (has more than `burst`
requests waiting). Among keys that merely take turns it would reorder what SFQ serves
in turn and lengthen the tail of whichever key happened to send a few more: W1 of
`make bench-system` (three teams at one rate) had a p95 of 18.6 s without credit and
19.9 s with it spent there.

Dispatch is by model: a free slot for model M takes the best waiter for M (lowest
class, then smallest start tag); a free place to load a model takes the best waiter
among the models it may load. Waiters leave on dispatch, on their deadline, or when
their client goes (cancelled), in O(log n) with lazy removal.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llm_gateway.vocabulary import PRIORITIES


@dataclass(eq=False, slots=True)
class Waiter:
    """One request (one flight) waiting for a slot."""

    model: str
    key: str
    priority: int  # index into PRIORITIES
    weight: float
    enqueued_at: float
    deadline: float  # loop time
    future: asyncio.Future[Any]
    start: float = 0.0
    seq: int = 0
    # Instances this waiter must not go to (one that just failed it).
    exclude: frozenset[str] = frozenset()
    # Sent again after the instance serving it went down (refused as `instance_lost`).
    lost: bool = False
    active: bool = True
    # Prefix affinity: the prompt's chained block hashes and its length (`prefix.py`).
    prefix: tuple[bytes, ...] = ()
    prompt_chars: int = 0
    opening: bool = False  # a chat's first turn: placed by load (`prefix.py`)

    @property
    def order(self) -> tuple[int, float, int]:
        return (self.priority, self.start, self.seq)


@dataclass(slots=True)
class _ClassState:
    virtual: float = 0.0
    last_finish: dict[str, float] = field(default_factory=dict)


class QueueFull(Exception):
    """The queue holds its maximum depth already."""


# Requests of credit a key under its fair share keeps (see the module doc).
DEFAULT_BURST = 12.0


class FairQueue:
    def __init__(self, max_depth: int, burst: float = DEFAULT_BURST) -> None:
        self.max_depth = max_depth
        self.burst = burst
        self._classes = [_ClassState() for _ in PRIORITIES]
        # (model, class) -> heap of (start, seq, waiter); inactive waiters are skipped.
        self._heaps: dict[tuple[str, int], list[tuple[float, int, Waiter]]] = {}
        self._depth: dict[tuple[str, int], int] = {}
        # Per class: requests waiting per key (a key with more than `burst` floods).
        self._queued: list[dict[str, int]] = [{} for _ in PRIORITIES]
        self._size = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        return self._size

    def push(self, waiter: Waiter) -> None:
        """Tag and enqueue `waiter`, or raise QueueFull."""
        if self._size >= self.max_depth:
            raise QueueFull
        state = self._classes[waiter.priority]
        last = state.last_finish.get(waiter.key)
        # The same floor for every key: keys spending credit together share in
        # proportion to their weights, as when they are backlogged. Credit is spent
        # only against a flooding key; among keys that merely take turns it would
        # reorder requests that plain SFQ serves in turn, and lengthen the tail of
        # whichever key happened to send a few more.
        floor = state.virtual - (self.burst if self._flooded(waiter) else 0.0)
        waiter.start = floor if last is None else max(floor, last)
        state.last_finish[waiter.key] = waiter.start + 1.0 / waiter.weight
        waiter.seq = next(self._seq)
        slot = (waiter.model, waiter.priority)
        heapq.heappush(self._heaps.setdefault(slot, []), (waiter.start, waiter.seq, waiter))
        self._depth[slot] = self._depth.get(slot, 0) + 1
        queued = self._queued[waiter.priority]
        queued[waiter.key] = queued.get(waiter.key, 0) + 1
        self._size += 1

    def _flooded(self, waiter: Waiter) -> bool:
        """Another key of the class has more requests waiting than the burst: it is
        flooding the queue, and the credit of `waiter`'s key counts against it."""
        if self.burst <= 0:
            return False
        queued = self._queued[waiter.priority]
        return any(n > self.burst for key, n in queued.items() if key != waiter.key)

    def remove(self, waiter: Waiter) -> None:
        """Take `waiter` out (its deadline passed, or its client went away)."""
        if not waiter.active:
            return
        waiter.active = False
        queued = self._queued[waiter.priority]
        left = queued[waiter.key] - 1
        if left:
            queued[waiter.key] = left
        else:
            del queued[waiter.key]
        slot = (waiter.model, waiter.priority)
        depth = self._depth[slot] = self._depth[slot] - 1
        self._size -= 1
        heap = self._heaps[slot]
        if len(heap) > 2 * depth + 32:  # mostly departed waiters: drop them
            heap[:] = [entry for entry in heap if entry[2].active]
            heapq.heapify(heap)

    def _head(self, model: str, priority: int) -> Waiter | None:
        heap = self._heaps.get((model, priority))
        while heap:
            waiter = heap[0][2]
            if waiter.active:
                return waiter
            heapq.heappop(heap)
        return None

    def best(
        self,
        models: Iterable[str],
        instance: str | None = None,
        skip: Collection[Waiter] = (),
    ) -> Waiter | None:
        """The waiter that goes next among `models` (None: nobody waits for them).

        With `instance`, waiters that must not go there are passed over; so are those in
        `skip` (waiting for one instance: `holds.py`).
        """
        chosen: Waiter | None = None
        for model in models:
            for priority in range(len(PRIORITIES)):
                waiter = self._head(model, priority)
                if waiter is not None and (
                    (instance is not None and instance in waiter.exclude) or waiter in skip
                ):
                    waiter = self._first_allowed(model, priority, instance, skip)
                if waiter is not None and (chosen is None or waiter.order < chosen.order):
                    chosen = waiter
        return chosen

    def _first_allowed(
        self, model: str, priority: int, instance: str | None, skip: Collection[Waiter]
    ) -> Waiter | None:
        heap = self._heaps.get((model, priority), [])
        allowed = [
            w for _, _, w in heap if w.active and instance not in w.exclude and w not in skip
        ]
        return min(allowed, key=lambda w: w.order, default=None)

    def take(self, waiter: Waiter) -> None:
        """Dispatch `waiter`: it leaves the queue and its class's virtual time advances."""
        self.remove(waiter)
        state = self._classes[waiter.priority]
        state.virtual = max(state.virtual, waiter.start)

    def credits(self) -> dict[str, dict[str, float]]:
        """Per class, the keys with credit banked now (requests they may send ahead of
        a backlogged key): for /admin/queue."""
        banked: dict[str, dict[str, float]] = {}
        for name, state in zip(PRIORITIES, self._classes, strict=True):
            keys = {
                key: round(min(self.burst, state.virtual - last), 2)
                for key, last in state.last_finish.items()
                if last < state.virtual
            }
            if keys:
                banked[name] = keys
        return banked

    def depth(self, model: str, priority: int | None = None) -> int:
        if priority is not None:
            return self._depth.get((model, priority), 0)
        return sum(self._depth.get((model, p), 0) for p in range(len(PRIORITIES)))

    def ahead_of(self, waiter: Waiter) -> int:
        """Waiters for the same model that go before `waiter` as things stand."""
        count = 0
        for priority in range(waiter.priority + 1):
            for _, _, other in self._heaps.get((waiter.model, priority), []):
                if other.active and other is not waiter and other.order < waiter.order:
                    count += 1
        return count

    def models(self) -> list[str]:
        """Models with at least one waiter."""
        return sorted({model for (model, _), n in self._depth.items() if n > 0})

    def waiters(self) -> Iterator[Waiter]:
        for heap in self._heaps.values():
            for _, _, waiter in heap:
                if waiter.active:
                    yield waiter

    def oldest(self, model: str) -> float | None:
        """When the longest-waiting request for `model` was queued (None: none waits)."""
        times = [w.enqueued_at for w in self.waiters() if w.model == model]
        return min(times, default=None)
