"""Steady streaming load through the TLS edge: a fixed number of clients, each streaming
one generation after another, every request recorded.

A request ends one of three ways: `ok` (the stream's final `done: true` line arrived),
`cut` (it began, status 200 and a first chunk, and ended without that line: a reset,
an early close), `failed` (no stream: refused connection, TLS error, a non-200 status,
5xx included). Each client opens a new connection per request, so what is measured is
what the stack does to a request, not a client pool's reuse of a connection the
server has just closed. After a failure a client pauses RETRY_PAUSE before its next
request, as a client retrying would. Bounded in time and in count.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

MAX_REQUESTS = 50_000
MAX_SECONDS = 900.0
RETRY_PAUSE = 0.25
STAGGER = 0.25


@dataclass(frozen=True)
class Sample:
    client: int
    # Seconds since the load's start.
    started: float
    first_token: float | None
    ended: float
    status: int | None
    outcome: str  # ok | cut | failed
    error: str = ""

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.started

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def client_context(*trusted: Path) -> ssl.SSLContext:
    """Trusts the edge's current certificate and the one it is about to be given."""
    context = ssl.create_default_context()
    for path in trusted:
        context.load_verify_locations(cafile=str(path))
    return context


class Load:
    def __init__(
        self, url: str, key: str, model: str, context: ssl.SSLContext, clients: int
    ) -> None:
        self.url = url.rstrip("/") + "/api/generate"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.model = model
        self.context = context
        self.clients = clients
        self.samples: list[Sample] = []
        self.t0 = time.monotonic()
        self._stop = asyncio.Event()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> list[Sample]:
        self.t0 = time.monotonic()
        deadline = self.t0 + MAX_SECONDS
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + MAX_SECONDS):
                await asyncio.gather(*(self._client(i, deadline) for i in range(self.clients)))
        except TimeoutError:
            pass
        return self.samples

    async def _client(self, index: int, deadline: float) -> None:
        # Staggered starts, so that requests begin and end all the time, not in waves.
        await asyncio.sleep(index * STAGGER)
        limits = httpx.Limits(max_keepalive_connections=0)
        timeout = httpx.Timeout(60.0, connect=10.0)
        async with httpx.AsyncClient(verify=self.context, limits=limits, timeout=timeout) as http:
            n = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                if len(self.samples) >= MAX_REQUESTS:
                    return
                sample = await self._one(http, index, n)
                self.samples.append(sample)
                n += 1
                if sample.outcome == "failed":
                    # As a client would before it tries again, and so a refusing edge
                    # is not counted in thousands of instant attempts.
                    await asyncio.sleep(RETRY_PAUSE)

    async def _one(self, http: httpx.AsyncClient, index: int, n: int) -> Sample:
        started = self.now()
        first: float | None = None
        status: int | None = None
        body = {"model": self.model, "prompt": f"client {index} request {n}", "stream": True}
        try:
            async with http.stream("POST", self.url, json=body, headers=self.headers) as reply:
                status = reply.status_code
                if status != 200:
                    text = (await reply.aread()).decode(errors="replace")
                    return Sample(index, started, None, self.now(), status, "failed", text[:160])
                done = False
                async for line in reply.aiter_lines():
                    if not line:
                        continue
                    if first is None:
                        first = self.now()
                    done = bool(orjson.loads(line).get("done"))
                outcome = "ok" if done else "cut"
                return Sample(index, started, first, self.now(), status, outcome)
        except (httpx.HTTPError, ssl.SSLError, OSError, orjson.JSONDecodeError) as exc:
            outcome = "cut" if status == 200 else "failed"
            return Sample(index, started, first, self.now(), status, outcome, type(exc).__name__)
