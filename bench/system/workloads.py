"""The workloads of the system benchmark, the routing modes each runs in, and their request plans.

Every workload is open-loop: each stream (one key, one model, one request shape) is a
Poisson process at its own rate, in requests per simulated second, drawn from a seeded
generator, so every mode of a workload replays exactly the same arrivals and bodies.
Rates are fractions of the capacity `capacity.py` computes from the emulator's
catalogue for the layout the workload is about.

- W1 multi-model: two big models (one per 24 GB instance) and a small one, at 70% of
  what keeping each big model on its own instance serves. Starts cold.
- W2 overload: 150% of capacity on one model loaded on both instances: an interactive
  key (50%) and a batch key (100%, `X-LLM-Priority: batch`). Before it, on the same
  gateway, a light run of the interactive requests one at a time: the unloaded TTFT.
- W3 a flooding key: a key at 5x its fair share (capacity / 2 keys) and a steady
  interactive key at 40% of capacity, same model and shapes as W2.
- W4 mixed num_ctx: half the requests `num_ctx: 2048`, half 8192, one model, 70%; run
  least-conn with the gateway passing runner options on as well (raw clients).

- W5 multi-turn chats (`chats.py`): three instances of one model with two slots each,
  conversations on long shared system prompts at 65% of what they serve when every
  follow-up finds its history cached; least-conn, model-aware without and with prefix
  affinity, and the ideal (each conversation pinned to one instance, load ignored).
- W6 capacity drop: W1's traffic, one of the two instances stopped a third of the way
  in and started again (cold) at two thirds.

W1-W3 also run with two model-aware replicas behind client-side round robin: replicas
share no in-flight counts, queues or estimates, and the difference from one replica is
what not sharing them costs (at 70% in W1, in overload in W2 and W3).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from bench.system import chats
from bench.system.capacity import Shape, mix_capacity, service_seconds

BIG_A = "gemma2:27b"
BIG_B = "mistral-small:24b"
SMALL = "llama3.2"
MODELS = (BIG_A, BIG_B, SMALL)
# Weights in GB the emulator is given (--model-size): one big model fits per 24 GB GPU.
MODEL_SIZES_GB = {BIG_A: 16, BIG_B: 16}
MODEL_LOAD_SECONDS = {BIG_A: 8, BIG_B: 8}
INSTANCES = 2
VRAM_GB = 24
CONTEXT_LENGTH = 4096

PROMPT_WORDS = 120
# The emulator counts words plus 4 per message plus 1 (one user message either way).
PROMPT_TOKENS = PROMPT_WORDS + 5
NUM_PREDICT = 256

Routing = Literal["least-conn", "model-aware"]
Endpoint = Literal["generate", "chat"]

W1_MIX = {BIG_A: 0.4, BIG_B: 0.4, SMALL: 0.2}
W1_KEYS: tuple[tuple[str, Endpoint], ...] = (
    ("team-a", "generate"),
    ("team-b", "chat"),
    ("team-c", "generate"),
)


@dataclass(frozen=True)
class Layout:
    """The emulated Ollama instances a workload runs on (one stack per layout)."""

    name: str
    instances: int
    models: tuple[str, ...]
    num_parallel: int
    context_length: int
    flags: tuple[str, ...] = ()  # further emulator flags (sizes, load times, speeds)
    vram_gb: int = VRAM_GB


TWO_GPUS = Layout(
    "two 24 GB GPUs", INSTANCES, MODELS, 1, CONTEXT_LENGTH,
    (
        "--model-size", ",".join(f"{m}={gb}" for m, gb in MODEL_SIZES_GB.items()),
        "--model-load-time", ",".join(f"{m}={s}" for m, s in MODEL_LOAD_SECONDS.items()),
    ),
)  # fmt: skip
CHAT_SERVERS = Layout(
    "three chat servers", chats.INSTANCES, (chats.MODEL,), chats.NUM_PARALLEL,
    chats.CONTEXT_LENGTH,
    (
        "--model-decode-speed", f"{chats.MODEL}={chats.DECODE_TPS:g}",
        "--model-prompt-speed", f"{chats.MODEL}={chats.PROMPT_TPS:g}",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Mode:
    """How the gateway routes in one run."""

    label: str
    routing: Routing
    runner_options: Literal["strip", "pass"] = "strip"
    replicas: int = 1
    share_in_flight: bool = False
    # Prefix affinity within model-aware placement; None: the stack's default.
    affinity: bool | None = None
    # W5's ideal: one gateway per instance, passing everything to it (upstream routing),
    # and the client sends each conversation to one of them: pinned, load ignored.
    pinned: bool = False


LEAST_CONN = Mode("least-conn", "least-conn")
MODEL_AWARE = Mode("model-aware", "model-aware")
MODEL_AWARE_X2 = Mode("model-aware x2", "model-aware", replicas=2)
MODEL_AWARE_X2_SHARED = Mode(
    "model-aware x2 shared", "model-aware", replicas=2, share_in_flight=True
)
LEAST_CONN_PASS = Mode("least-conn, pass (raw clients)", "least-conn", runner_options="pass")
ALL_MODES = (LEAST_CONN, MODEL_AWARE, MODEL_AWARE_X2, MODEL_AWARE_X2_SHARED)
NO_AFFINITY = Mode("model-aware, no affinity", "model-aware", affinity=False)
AFFINITY = Mode("model-aware + affinity", "model-aware", affinity=True)
IDEAL = Mode("ideal (pinned)", "least-conn", pinned=True)
CHAT_MODES = (LEAST_CONN, NO_AFFINITY, AFFINITY, IDEAL)


@dataclass(frozen=True)
class Drop:
    """An instance stopped and started again (cold), at fractions of the arrivals."""

    instance: int = 1
    down_at: float = 1 / 3
    back_at: float = 2 / 3


@dataclass(frozen=True)
class Stream:
    """One key sending one request shape as a Poisson process."""

    key: str
    model: str
    rate: float  # requests per simulated second
    endpoint: Endpoint = "generate"
    priority: str | None = None  # sent as X-LLM-Priority
    num_ctx: int | None = None

    @property
    def label(self) -> str:
        extra = f" {self.priority}" if self.priority else ""
        ctx = f" num_ctx={self.num_ctx}" if self.num_ctx else ""
        return f"{self.key}: {self.model}{extra}{ctx} @ {self.rate:.3f}/s"


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    streams: tuple[Stream, ...]
    duration: float  # simulated seconds of arrivals
    capacity: float  # requests per simulated second the layout serves
    modes: tuple[Mode, ...]
    # Models loaded on every instance before the run (the counters start after).
    preload: tuple[str, ...] = ()
    # Requests of this stream's shape sent one at a time before the run: unloaded TTFT.
    baseline_stream: int | None = None
    baseline_requests: int = 0
    layout: Layout = TWO_GPUS
    chat: bool = False  # conversations (chats.py) instead of streams
    drop: Drop | None = None

    @property
    def rate(self) -> float:
        return sum(s.rate for s in self.streams)

    @property
    def load(self) -> float:
        return self.rate / self.capacity

    @property
    def keys(self) -> list[str]:
        return sorted({s.key for s in self.streams})


@dataclass(frozen=True)
class Planned:
    """One request of a plan, ready to send."""

    index: int
    at: float  # simulated seconds after the run's start
    stream: int
    key: str
    model: str
    path: str
    body: bytes
    priority: str | None


@dataclass(frozen=True)
class Plan:
    workload: Workload
    requests: tuple[Planned, ...]
    baseline: tuple[Planned, ...] = ()
    truncated: int = 0  # arrivals dropped by the cap on requests


@dataclass(frozen=True)
class Lengths:
    """How long each workload runs (simulated seconds) and the baseline's size."""

    # W1's least-conn tail is chaotic: 20 minutes make its p95 steadier than 10.
    w1: float = 1200.0
    others: float = 300.0
    baseline_requests: int = 24
    # W5: conversations arrive over this long (each then lasts minutes).
    chats: float = 1200.0
    # W6: long enough for two minutes after the instance is back, and a steady third.
    drop: float = 900.0

    @classmethod
    def smoke(cls) -> Lengths:
        return cls(w1=30.0, others=30.0, baseline_requests=2, chats=60.0, drop=60.0)


@dataclass(frozen=True)
class Capacities:
    service: dict[str, float] = field(default_factory=dict)  # model -> simulated seconds
    w1: float = 0.0
    one_model: float = 0.0  # BIG_B on every instance
    chat_turns: float = 0.0  # W5: turns per second, every history cached


def shape(model: str) -> Shape:
    return Shape(model, PROMPT_TOKENS, NUM_PREDICT)


def capacities() -> Capacities:
    service = {model: service_seconds(shape(model)) for model in MODELS}
    w1 = mix_capacity(W1_MIX, service, INSTANCES, pinned={BIG_A: 0, BIG_B: 1})
    one = mix_capacity({BIG_B: 1.0}, service, INSTANCES)
    return Capacities(service, w1, one, chats.capacity())


def build(lengths: Lengths, caps: Capacities) -> list[Workload]:
    w1_rate = 0.7 * caps.w1
    w1_streams = tuple(
        Stream(key, model, w1_rate * share / len(W1_KEYS), endpoint)
        for key, endpoint in W1_KEYS
        for model, share in W1_MIX.items()
    )
    one = caps.one_model
    return [
        Workload(
            "W1", "multi-model, 70% of capacity with each big model on its own instance",
            w1_streams, lengths.w1, caps.w1, ALL_MODES,
        ),
        Workload(
            "W2", "overload, 150%: interactive key 50% + batch key 100%",
            (
                Stream("interactive", BIG_B, 0.5 * one),
                Stream("batch", BIG_B, 1.0 * one, "chat", priority="batch"),
            ),
            lengths.others, one, ALL_MODES, preload=(BIG_B,),
            baseline_stream=0, baseline_requests=lengths.baseline_requests,
        ),
        Workload(
            "W3", "a flooding key at 5x its fair share beside a steady key at 40%",
            (Stream("steady", BIG_B, 0.4 * one), Stream("flood", BIG_B, 2.5 * one, "chat")),
            lengths.others, one, ALL_MODES, preload=(BIG_B,),
        ),
        Workload(
            "W4", "mixed num_ctx (2048 / 8192) on one model, 70%",
            (
                Stream("ctx-2k", BIG_B, 0.35 * one, num_ctx=2048),
                Stream("ctx-8k", BIG_B, 0.35 * one, "chat", num_ctx=8192),
            ),
            lengths.others, one, (LEAST_CONN, MODEL_AWARE, LEAST_CONN_PASS), preload=(BIG_B,),
        ),
        Workload(
            "W5", "multi-turn chats on shared system prompts, 65% of cached capacity",
            (Stream("chat", chats.MODEL, chats.LOAD * caps.chat_turns, "chat"),),
            lengths.chats, caps.chat_turns, CHAT_MODES, preload=(chats.MODEL,),
            layout=CHAT_SERVERS, chat=True,
        ),
        Workload(
            "W6", "W1's traffic; one instance stopped at 1/3, back cold at 2/3",
            w1_streams, lengths.drop, caps.w1, (MODEL_AWARE,), drop=Drop(),
        ),
    ]  # fmt: skip


def key_names(workloads: Iterable[Workload]) -> list[str]:
    return sorted({key for w in workloads for key in w.keys})


def _body(stream: Stream, index: int, rng: random.Random) -> tuple[str, bytes]:
    # Words are all the emulator counts; the index makes every prompt unique.
    words = [*(f"w{rng.randrange(10_000)}" for _ in range(PROMPT_WORDS - 1)), f"r{index}"]
    text = " ".join(words)
    options: dict[str, Any] = {"num_predict": NUM_PREDICT, "temperature": 0.7}
    if stream.num_ctx is not None:
        options["num_ctx"] = stream.num_ctx
    data: dict[str, Any] = {"model": stream.model, "stream": True, "options": options}
    if stream.endpoint == "chat":
        data["messages"] = [{"role": "user", "content": text}]
    else:
        data["prompt"] = text
    return f"/api/{stream.endpoint}", orjson.dumps(data)


def _planned(index: int, at: float, number: int, stream: Stream, rng: random.Random) -> Planned:
    path, body = _body(stream, index, rng)
    return Planned(index, at, number, stream.key, stream.model, path, body, stream.priority)


def make_plan(workload: Workload, seed: int, max_requests: int) -> Plan:
    """The workload's arrivals and bodies: the same for every mode (same seed)."""
    arrivals: list[tuple[float, int]] = []
    for number, stream in enumerate(workload.streams):
        rng = random.Random(f"{seed}:{workload.name}:{number}:arrivals")
        t = rng.expovariate(stream.rate)
        while t < workload.duration:
            arrivals.append((t, number))
            t += rng.expovariate(stream.rate)
    arrivals.sort()
    kept = arrivals[:max_requests]
    bodies = random.Random(f"{seed}:{workload.name}:bodies")
    requests = tuple(
        _planned(i, at, number, workload.streams[number], bodies)
        for i, (at, number) in enumerate(kept)
    )
    baseline: tuple[Planned, ...] = ()
    if workload.baseline_stream is not None:
        stream = workload.streams[workload.baseline_stream]
        rng = random.Random(f"{seed}:{workload.name}:baseline")
        baseline = tuple(
            _planned(len(requests) + i, 0.0, workload.baseline_stream, stream, rng)
            for i in range(workload.baseline_requests)
        )
    return Plan(workload, requests, baseline, len(arrivals) - len(kept))


def select(workloads: Sequence[Workload], names: Iterable[str]) -> list[Workload]:
    wanted = {n.strip().upper() for n in names if n.strip()}
    unknown = wanted - {w.name for w in workloads}
    if unknown:
        raise ValueError(f"unknown workloads: {sorted(unknown)}")
    return [w for w in workloads if w.name in wanted]


def probe_requests(model: str, count: int, seed: int) -> tuple[Planned, ...]:
    """`count` requests of the workloads' shape for `model`, to send one at a time."""
    stream = Stream("probe", model, 0.0)
    rng = random.Random(f"{seed}:probe:{model}")
    return tuple(_planned(i, 0.0, 0, stream, rng) for i in range(count))
