"""The open-loop load generator: requests at their planned instants, streamed, timed.

Each planned request is sent at `t0 + at / scale` whatever happened to the earlier
ones (open loop: a closed loop would hide queueing), on a pool with no connection
limit, round robin over the gateway replicas. Its stream is read line by line: the
time to first token is the first NDJSON line with content, the final line gives the
token count. No first token within the client's timeout (180 simulated seconds) makes
it a timeout and the connection is dropped, as a client would.

Outcomes: completed, shed (a gateway 503 with Retry-After), ollama_503 (Ollama's
"server busy ... maximum pending requests exceeded" reaching the client), timeout, or
error. All times are real seconds here; `summary.py` turns them into simulated ones.

The generator checks itself: the event loop's lag (a 5 ms ticker), how late each
request left against its plan, and the CPU this process used.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bench.system.workloads import Planned

OLLAMA_BUSY = b"maximum pending requests exceeded"
_TICK = 0.005
# A loop lag longer than this is a stall: requests waiting across it are flagged, as
# their times grew by it (x the time scale once simulated).
STALL_SECONDS = 0.025


@dataclass
class Outcome:
    index: int
    key: str
    model: str
    stream: int
    priority: str | None
    replica: int
    planned: float  # real seconds after the run's start
    sent: float = 0.0  # real seconds after the run's start
    kind: str = "error"  # completed | shed | ollama_503 | timeout | error
    status: int | None = None
    first_token: float | None = None  # real seconds after `sent`
    ended: float | None = None  # real seconds after the run's start
    tokens: int = 0
    retry_after: str | None = None
    detail: str = ""
    # From the final chunk: every prompt token, and the simulated seconds the uncached
    # part took (Ollama's prompt_eval_count and prompt_eval_duration).
    prompt_tokens: int = 0
    prompt_eval: float = 0.0
    # Multi-turn chats (chatload.py): the conversation and the turn (0: the first).
    conversation: int = -1
    turn: int = -1

    def row(self) -> list[Any]:
        """Compact form for the JSON dump (see `ROW_FIELDS`)."""
        return [
            self.index, self.key, self.model, self.priority, self.replica,
            round(self.planned, 4), round(self.sent, 4), self.kind, self.status,
            None if self.first_token is None else round(self.first_token, 5),
            None if self.ended is None else round(self.ended, 4),
            self.tokens, self.retry_after, self.detail[:160], self.prompt_tokens,
            round(self.prompt_eval, 4), self.conversation, self.turn,
        ]  # fmt: skip


ROW_FIELDS = [
    "index", "key", "model", "priority", "replica", "planned_real_s", "sent_real_s",
    "kind", "status", "first_token_real_s", "ended_real_s", "tokens", "retry_after", "detail",
    "prompt_eval_count", "prompt_eval_sim_s", "conversation", "turn",
]  # fmt: skip


@dataclass
class LoadResult:
    outcomes: list[Outcome]
    span: float  # real seconds from start to the last request's end
    loop_lag_ms: list[float] = field(default_factory=list)
    send_lag_ms: list[float] = field(default_factory=list)
    # (start, end) real seconds after the start, when the loop did not run.
    stalls: list[tuple[float, float]] = field(default_factory=list)
    cpu_seconds: float = 0.0
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Limits:
    ttft: float  # real seconds to the first token, then it is a timeout
    total: float  # real seconds for the whole request


def _content(data: Mapping[str, Any]) -> str:
    response = data.get("response")
    if response:
        return str(response)
    message = data.get("message")
    if isinstance(message, dict) and message.get("content"):
        return str(message["content"])
    return ""


def _classify(outcome: Outcome, status: int, headers: Mapping[str, str], body: bytes) -> None:
    outcome.status = status
    outcome.retry_after = headers.get("Retry-After")
    outcome.detail = body[:200].decode("utf-8", "replace")
    if status == 503 and OLLAMA_BUSY in body:
        outcome.kind = "ollama_503"
    elif status == 503 and outcome.retry_after is not None:
        outcome.kind = "shed"
    else:
        outcome.kind = "error"


async def send_one(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    planned: Planned,
    outcome: Outcome,
    limits: Limits,
    t0: float,
    answer: list[str] | None = None,
) -> None:
    """Send `planned`, stream its answer (its text into `answer` if given), time it."""
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if planned.priority:
        headers["X-LLM-Priority"] = planned.priority
    sent = loop.time()
    outcome.sent = sent - t0
    try:
        async with asyncio.timeout(limits.ttft) as deadline:
            async with session.post(url + planned.path, data=planned.body, headers=headers) as r:
                if r.status != 200:
                    body = await r.read()
                    _classify(outcome, r.status, r.headers, body)
                    return
                outcome.status = 200
                done = False
                # Read to the end of the body (past the final chunk), so the connection
                # is kept rather than dropped, which the gateway would log as a 499.
                async for line in r.content:
                    if done or not line.strip():
                        continue
                    data = orjson.loads(line)
                    if "error" in data:
                        busy = OLLAMA_BUSY in line and outcome.first_token is None
                        outcome.kind = "ollama_503" if busy else "error"
                        outcome.detail = f"in stream: {data['error']}"
                        return
                    text = _content(data)
                    if answer is not None and text:
                        answer.append(text)
                    if outcome.first_token is None and text:
                        outcome.first_token = loop.time() - sent
                        deadline.reschedule(sent + limits.total)
                    if data.get("done"):
                        done = True
                        outcome.ended = loop.time() - t0
                        outcome.tokens = int(data.get("eval_count") or 0)
                        outcome.prompt_tokens = int(data.get("prompt_eval_count") or 0)
                        outcome.prompt_eval = int(data.get("prompt_eval_duration") or 0) / 1e9
                        outcome.kind = "completed" if outcome.first_token is not None else "error"
                if not done:
                    outcome.kind = "error"
                    outcome.detail = "stream ended without a final chunk"
    except TimeoutError:
        if outcome.first_token is None:
            outcome.kind = "timeout"
        else:
            outcome.kind = "error"
            outcome.detail = "total timeout after the first token"
    except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
        outcome.kind = "error"
        outcome.detail = f"{type(exc).__name__}: {exc}"
    finally:
        if outcome.ended is None or outcome.kind != "completed":
            outcome.ended = loop.time() - t0


Sampler = Callable[[aiohttp.ClientSession], Awaitable[dict[str, Any]]]
Event = Callable[[], Awaitable[None]]


async def _at(when: float, event: Event) -> None:
    """Run `event` at loop time `when`."""
    await asyncio.sleep(max(when - asyncio.get_running_loop().time(), 0.0))
    await event()


async def sample_loop(
    session: aiohttp.ClientSession, sampler: Sampler, every: float, t0: float, into: list[Any]
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            sample = await sampler(session)
            sample["t_real"] = round(loop.time() - t0, 3)
            into.append(sample)
        await asyncio.sleep(every)


async def watch_lag(into: list[float], stalls: list[tuple[float, float]], t0: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(_TICK)
        after = loop.time()
        lag = after - before - _TICK
        into.append(lag * 1000)
        if lag > STALL_SECONDS:
            stalls.append((before + _TICK - t0, after - t0))


async def run_load(
    requests: Sequence[Planned],
    urls: Sequence[str],
    keys: Mapping[str, str],
    scale: float,
    limits: Limits,
    *,
    sequential: bool = False,
    pause: float = 0.0,
    sampler: Sampler | None = None,
    sample_every: float = 1.0,
    events: Sequence[tuple[float, Event]] = (),
) -> LoadResult:
    """Send `requests` (open loop, or one after another with `pause` real seconds
    between when `sequential`) and wait for every one to end. Each of `events` runs
    at its simulated instant (an instance stopped, started again)."""
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    outcomes: list[Outcome] = []
    lags: list[float] = []
    send_lags: list[float] = []
    samples: list[dict[str, Any]] = []
    stalls: list[tuple[float, float]] = []
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = loop.time()
        background = [asyncio.create_task(watch_lag(lags, stalls, t0))]
        if sampler is not None:
            background.append(
                asyncio.create_task(sample_loop(session, sampler, sample_every, t0, samples))
            )
        for at, event in events:
            background.append(asyncio.create_task(_at(t0 + at / scale, event)))
        tasks: list[asyncio.Task[None]] = []
        try:
            for number, planned in enumerate(requests):
                replica = number % len(urls)
                if sequential:
                    at = loop.time() - t0
                else:
                    at = planned.at / scale
                    delay = t0 + at - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                outcome = Outcome(
                    planned.index, planned.key, planned.model, planned.stream,
                    planned.priority, replica, at,
                )  # fmt: skip
                outcomes.append(outcome)
                send_lags.append(max(0.0, (loop.time() - t0 - at) * 1000))
                url = urls[replica]
                call = send_one(session, url, keys[planned.key], planned, outcome, limits, t0)
                if sequential:
                    await call
                    await asyncio.sleep(pause)
                else:
                    tasks.append(asyncio.create_task(call))
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, *background]:
                task.cancel()
            await asyncio.gather(*tasks, *background, return_exceptions=True)
        ends = [o.ended for o in outcomes if o.ended is not None]
        span = max(ends, default=loop.time() - t0)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return LoadResult(outcomes, span, lags, send_lags, stalls, cpu, samples)


def run(coro: Awaitable[LoadResult]) -> LoadResult:
    """Run the generator on uvloop (its own loop, in this otherwise idle process)."""
    import uvloop

    async def main() -> LoadResult:
        return await coro

    return uvloop.run(main())
