"""A loaded model (Ollama's runnerRef): its runner options, memory, slots and references.

The runner options are the ones fixed when llama-server starts (api.Runner); a request
asking for different ones needs another runner (sched.go `needsReload`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_emulator.catalog import ModelEntry
from llm_emulator.prompt_cache import PromptCaches

RUNNER_OPTIONS = frozenset(
    ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")
)
_MIN_CTX = 4  # getRunner raises smaller num_ctx to 4


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """api.Runner after Ollama's defaults: num_ctx clamped to the trained context."""

    num_ctx: int
    num_batch: int = 512
    num_gpu: int = -1  # -1: as many layers as fit
    main_gpu: int | None = None
    use_mmap: bool | None = None
    num_thread: int = 0

    def needs_reload(self, wanted: RunnerOptions) -> bool:
        """sched.go needsReload: any difference, except num_gpu when the request says -1."""
        if wanted is self:
            return False
        return (
            self.num_ctx != wanted.num_ctx
            or self.num_batch != wanted.num_batch
            or (wanted.num_gpu >= 0 and self.num_gpu != wanted.num_gpu)
            or self.main_gpu != wanted.main_gpu
            or self.use_mmap != wanted.use_mmap
            or self.num_thread != wanted.num_thread
        )


def _int(value: Any, default: int) -> int:
    # Go's Options.FromMap takes any JSON number for an int option, truncating it.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return int(value)


def runner_options(options: Mapping[str, Any], default_ctx: int, trained_ctx: int) -> RunnerOptions:
    """The runner options a request asks for (`options` as sent, defaults filled in)."""
    num_ctx = max(_int(options.get("num_ctx"), default_ctx), _MIN_CTX)
    if trained_ctx and num_ctx > trained_ctx:
        num_ctx = trained_ctx
    main_gpu = options.get("main_gpu")
    use_mmap = options.get("use_mmap")
    return RunnerOptions(
        num_ctx=num_ctx,
        num_batch=_int(options.get("num_batch"), 512),
        num_gpu=_int(options.get("num_gpu"), -1),
        main_gpu=_int(main_gpu, 0) if main_gpu is not None else None,
        use_mmap=use_mmap if isinstance(use_mmap, bool) else None,
        num_thread=_int(options.get("num_thread"), 0),
    )


class Slots:
    """OLLAMA_NUM_PARALLEL: a FIFO semaphore (Go's semaphore.Weighted), waits unbounded."""

    __slots__ = ("_waiters", "free", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def ready(self) -> bool:
        """A take() now would not wait."""
        return self.free > 0 and not self._waiters

    async def take(self) -> None:
        if self.ready():
            self.free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot just as the client left: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


class Runner:
    """One model loaded on the GPU (or partly in system RAM when size_vram < size)."""

    __slots__ = (
        "caches",
        "context_length",
        "decode_work",
        "entry",
        "expires_at_ns",
        "idle_until",
        "loaded_at_ns",
        "num_parallel",
        "options",
        "prompt_work",
        "ref_count",
        "served",
        "session_ns",
        "size",
        "slots",
        "timer",
        "timer_at",
        "unload_when_idle",
        "unloaded",
        "victim",
        "vram",
    )

    def __init__(
        self,
        entry: ModelEntry,
        options: RunnerOptions,
        num_parallel: int,
        size: int,
        vram: int,
        session_ns: int,
        loaded_at_ns: int,
    ) -> None:
        self.entry = entry
        self.options = options
        self.num_parallel = num_parallel  # 0: unlimited
        self.size = size
        self.vram = vram
        self.context_length = options.num_ctx
        self.slots = Slots(num_parallel) if num_parallel > 0 else None
        self.session_ns = session_ns
        self.loaded_at_ns = loaded_at_ns
        self.ref_count = 0
        self.served = 0
        # The keep-alive timer: one timer serves many busy/idle turns (see scheduler.py).
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0  # loop time the timer fires at
        self.idle_until = 0.0  # loop time the keep-alive of the current idle turn ends
        self.expires_at_ns = 0  # 0 until the runner first goes idle (as in Ollama)
        self.victim = False
        self.unload_when_idle = False
        self.unloaded = False
        # Exclusive GPU seconds per token (speed.work_per_token); 0: instant.
        self.prompt_work = 0.0
        self.decode_work = 0.0
        # llama-server's slot and host prompt caches (set by the scheduler at load).
        self.caches = PromptCaches(num_parallel, options.num_ctx)

    @property
    def model(self) -> str:
        return self.entry.name

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def runner_size(entry: ModelEntry, options: RunnerOptions, num_parallel: int) -> int:
    """Weights plus the f16 KV cache for num_ctx x num_parallel tokens (PredictServerVRAM)."""
    spec = entry.spec
    return spec.size + spec.kv_bytes_per_token * options.num_ctx * max(num_parallel, 1)
