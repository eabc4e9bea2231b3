"""What a request holds: the `Ticket` it asks with, the `Grant` of a slot it gets back.

A `Grant` is a slot on one instance, held from dispatch until `release`. The holder
reads `instance`, `model`, `loads` (the request starts a load there) and `upstream`,
says `answered()` at the first byte, and `release()`s once done (at most once counts).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from llm_gateway.routing.fair_queue import Waiter
from llm_gateway.routing.instances import Instance
from llm_gateway.upstream import Upstream


class SlotOwner(Protocol):
    """Who is told when a grant's instance answers and when its slot frees."""

    def answered(self, grant: Grant) -> None: ...

    def released(self, grant: Grant, failure: str | None) -> None: ...


@dataclass(frozen=True, slots=True)
class Ticket:
    """What the dispatcher needs to know about one request."""

    model: str
    key: str
    priority: int  # index into PRIORITIES
    weight: float = 1.0
    deadline_seconds: float = 120.0
    # Prefix affinity (`prefix.py`): the prompt's chained block hashes and its length.
    prefix: tuple[bytes, ...] = ()
    prompt_chars: int = 0
    # A chat's first turn: placed by load, not by its system prompt (`prefix.py`).
    opening: bool = False

    def waiter(
        self,
        at: float,
        future: asyncio.Future[Any],
        exclude: frozenset[str],
        affinity: bool,
        lost: bool = False,
    ) -> Waiter:
        """This request, queued at `at` (it leaves by its deadline at the latest);
        `affinity`: with its prefix, for placement by prefix affinity; `lost`: sent
        again after its instance went down under it."""
        return Waiter(
            self.model, self.key, self.priority, self.weight, enqueued_at=at,
            deadline=at + self.deadline_seconds, future=future, exclude=exclude,
            lost=lost, prefix=self.prefix if affinity else (), prompt_chars=self.prompt_chars,
            opening=self.opening,
        )  # fmt: skip


class Grant:
    """A slot on one instance, held from dispatch until `release`."""

    __slots__ = (
        "_owner", "_released", "dispatched_at", "evaluated_chars", "instance", "key", "loads",
        "model",
    )  # fmt: skip

    def __init__(
        self,
        owner: SlotOwner,
        instance: Instance,
        model: str,
        key: str,
        loads: bool,
        dispatched_at: float,
    ) -> None:
        self._owner = owner
        self.instance = instance
        self.model = model
        self.key = key
        self.loads = loads
        self.dispatched_at = dispatched_at
        # Prompt characters the router estimated were not cached there (prefix affinity).
        self.evaluated_chars = 0
        self._released = False

    @property
    def upstream(self) -> Upstream:
        return self.instance.upstream

    @property
    def released(self) -> bool:
        return self._released

    def answered(self) -> None:
        """The instance's first byte arrived (a load it started has finished)."""
        self._owner.answered(self)

    def release(self, failure: str | None = None) -> None:
        """Give the slot back; `failure`: "down" (refused, reset: the instance is
        marked down until its next poll) or "busy" (Ollama answered 503)."""
        if not self._released:
            self._released = True
            self._owner.released(self, failure)
