"""Ollama's model scheduler (server/sched.go, v0.32-0.33), one GPU per emulator process.

- `request` is `getRunner`: a request for a loaded runner with the same runner options
  is handed that runner at once, even when the runner was chosen as a victim, and waits
  without bound for one of its OLLAMA_NUM_PARALLEL slots (issue 7758). Anything else
  joins the pending queue; more than OLLAMA_MAX_QUEUE pending answers 503.
- `_run_pending` is `processPending`: one pending request at a time, in order. If its
  model is loaded with other runner options the runner must go first (`needsReload`,
  issues 8903, 10948); at OLLAMA_MAX_LOADED_MODELS, or when the new runner does not fit
  in 80% of the free VRAM beside the others, a victim is picked (`findRunnerToUnload`:
  an idle runner first, else the shortest keep-alive, ties by name). The loop waits
  for the victim's last request to end and its unload to finish, then looks again; a
  load blocks the loop for the whole load time. A lone model that does not fit loads
  anyway, partly in system RAM (size_vram < size).
- `finished` is `processCompleted`: when a runner's last request ends it unloads at
  once if its keep-alive is 0 (or it is a victim), else after its keep-alive. A
  request that carries `keep_alive` sets the runner's keep-alive, so traffic with
  keep_alive on a victim postpones its unload until that traffic pauses that long.
- `expire_model` is `expireRunner` (an empty prompt with keep_alive 0).

Unlimited settings (the default) keep every rule but never make anyone wait: loads
are instant and everything fits. Requests for a loaded model create no task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from llm_emulator.catalog import ModelEntry
from llm_emulator.clock import SimClock
from llm_emulator.durations import FOREVER_NS
from llm_emulator.prompt_cache import PromptCaches, Taken
from llm_emulator.runner import (
    RUNNER_OPTIONS,
    Runner,
    RunnerOptions,
    runner_options,
    runner_size,
)
from llm_emulator.settings import CATALOG, SchedulerSettings, Speed
from llm_emulator.speed import Gpu, offload_factor, work_per_token

_log = logging.getLogger(__name__)
MAX_QUEUE_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
_GIB = 1 << 30
_GB = 1_000_000_000
# sched.go load(): a model loads beside others only if it needs at most 80% of free VRAM.
_FIT_SHARE = 0.8
# asyncio fires a timer up to its clock resolution early.
_TIMER_SLACK = 0.002


class Unavailable(Exception):
    """The scheduler cannot serve this request now: the handler answers 503."""


class QueueFull(Unavailable):
    """OLLAMA_MAX_QUEUE requests are already pending (Ollama's ErrMaxQueue)."""

    def __init__(self) -> None:
        super().__init__(MAX_QUEUE_MESSAGE)


class SchedulerReset(Unavailable):
    """The emulator was reset (`/_emulator/reset`) while this request waited."""


def default_num_ctx(vram_bytes: int) -> int:
    """routes.go: num_ctx by VRAM tier (47/23 GiB thresholds), 4096 with no VRAM budget."""
    if vram_bytes >= 47 * _GIB:
        return 262144
    if vram_bytes >= 23 * _GIB:
        return 32768
    return 4096


@dataclass(eq=False)
class Pending:
    """A request in the pending queue (sched.go LlmRequest)."""

    entry: ModelEntry
    options: RunnerOptions
    session_ns: int | None
    future: asyncio.Future[Runner]
    enqueued_ns: int = field(default_factory=time.perf_counter_ns)
    reload: bool = False

    @property
    def gone(self) -> bool:
        """The client left (its context is done) or the request got its answer."""
        return self.future.done()


@dataclass
class Counters:
    loads: dict[str, int] = field(default_factory=dict)
    # Loads of a model that was loaded already, with other runner options.
    reloads: dict[str, int] = field(default_factory=dict)
    # Runners picked to make room for another model.
    evictions: dict[str, int] = field(default_factory=dict)
    unloads: dict[str, int] = field(default_factory=dict)
    # Unloads because the keep-alive ran out.
    expired: int = 0
    # Loads given up because the client that asked for them left.
    aborted_loads: int = 0
    # 503s: OLLAMA_MAX_QUEUE exceeded.
    rejected: int = 0
    # Requests handed a runner, by model.
    served: dict[str, int] = field(default_factory=dict)
    # Prompt tokens of requests that got a slot: all of them (prompt_eval_count) and
    # those evaluated (the rest came from a slot's or the host's cache).
    prompt_tokens: int = 0
    prompt_evaluated: int = 0
    # Requests whose slot was refilled from the host-memory prompt cache.
    host_cache_loads: int = 0


def _needs_reload(runner: Runner, entry: ModelEntry, wanted: RunnerOptions) -> bool:
    # A re-pulled model (new digest) is another model file: Ollama loads it anew.
    return runner.entry.digest != entry.digest or runner.options.needs_reload(wanted)


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


class Lease:
    """A request's hold on a runner, from getting it to the end of the request."""

    __slots__ = ("_released", "_scheduler", "_slot", "cache", "generated", "runner")

    def __init__(self, scheduler: Scheduler, runner: Runner) -> None:
        self._scheduler = scheduler
        self.runner = runner
        self._slot = False
        self._released = False
        # The llama-server slot cache this request holds, and what it adds to it.
        self.cache: Taken | None = None
        self.generated: list[str] = []

    def use_cache(self, prompt: list[str]) -> Taken:
        """With a slot: the slot cache best matching `prompt` (llama-server's choice)."""
        taken = self.runner.caches.take(prompt)
        self.cache = taken
        counters = self._scheduler.counters
        counters.prompt_tokens += len(prompt)
        counters.prompt_evaluated += taken.evaluated
        if taken.from_host:
            counters.host_cache_loads += 1
        return taken

    def try_slot(self) -> bool:
        """Take one of the runner's OLLAMA_NUM_PARALLEL slots if one is free now."""
        slots = self.runner.slots
        if slots is not None:
            if not slots.ready():
                return False
            slots.free -= 1
        self._got_slot()
        return True

    async def wait_slot(self) -> None:
        """Wait for a slot, without bound (llama-server's semaphore.Acquire)."""
        slots = self.runner.slots
        if slots is not None:
            await slots.take()
        self._got_slot()

    def _got_slot(self) -> None:
        self._slot = True
        runner = self.runner
        if runner.prompt_work or runner.decode_work:
            self._scheduler.gpu.join(runner)

    def release(self) -> None:
        """The request is over (its Go context is done): slot and reference go back."""
        if self._released:
            return
        self._released = True
        runner = self.runner
        if self.cache is not None:
            runner.caches.done(self.cache, self.generated)
        if self._slot:
            if runner.prompt_work or runner.decode_work:
                self._scheduler.gpu.leave(runner)
            if runner.slots is not None:
                runner.slots.give()
        self._scheduler.finished(runner)


class Scheduler:
    def __init__(self, settings: SchedulerSettings, clock: SimClock) -> None:
        self.settings = settings
        self.clock = clock
        self.gpu = Gpu(clock, settings.decode_slowdown)
        self.vram_total = int(settings.vram_gib * _GIB)  # 0: unlimited
        self.default_ctx = settings.context_length or default_num_ctx(self.vram_total)
        self.loaded: dict[str, Runner] = {}
        self.counters = Counters()
        self._pending: deque[Pending] = deque()
        self._current: Pending | None = None
        self._loading: Pending | None = None
        self._loop: asyncio.Task[None] | None = None
        self._unloaded: asyncio.Event | None = None
        self._unloading_vram = 0
        self._default_options: dict[str, RunnerOptions] = {}
        self._closed = False

    # -- getRunner ------------------------------------------------------------------

    def options_for(self, entry: ModelEntry, options: Mapping[str, Any]) -> RunnerOptions:
        if not options or RUNNER_OPTIONS.isdisjoint(options):
            cached = self._default_options.get(entry.name)
            if cached is None:
                cached = runner_options({}, self.default_ctx, entry.spec.context_length)
                self._default_options[entry.name] = cached
            return cached
        return runner_options(options, self.default_ctx, entry.spec.context_length)

    def request(
        self, entry: ModelEntry, options: Mapping[str, Any], keep_alive_ns: int | None
    ) -> Lease | Pending:
        """A lease on a loaded runner at once, or a place in the pending queue.

        Raises QueueFull when OLLAMA_MAX_QUEUE requests are pending already.
        """
        wanted = self.options_for(entry, options)
        runner = self.loaded.get(entry.name)
        if runner is not None and not _needs_reload(runner, entry, wanted):
            self._use(runner, keep_alive_ns)
            return Lease(self, runner)
        limit = self.settings.max_queue
        if limit and len(self._pending) >= limit:
            self.counters.rejected += 1
            raise QueueFull
        future: asyncio.Future[Runner] = asyncio.get_running_loop().create_future()
        pending = Pending(entry, wanted, keep_alive_ns, future)
        self._pending.append(pending)
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self._run_pending())
        return pending

    async def wait(self, pending: Pending) -> Lease:
        """Wait for the pending request's runner (raises SchedulerReset after a reset)."""
        try:
            runner = await pending.future
        except asyncio.CancelledError:
            future = pending.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self.finished(future.result())  # handed the runner just as the client left
            raise
        return Lease(self, runner)

    def _use(self, runner: Runner, session_ns: int | None) -> None:
        """useLoadedRunner: one more reference; a request's keep_alive becomes the runner's."""
        runner.ref_count += 1
        runner.served += 1
        _bump(self.counters.served, runner.model)
        # Ollama stops the keep-alive timer here; ours is left to find the runner busy
        # when it fires (see finished()), which saves a timer per request.
        if session_ns is not None:
            runner.session_ns = session_ns

    # -- processPending -------------------------------------------------------------

    async def _run_pending(self) -> None:
        try:
            while self._pending:
                pending = self._pending.popleft()
                if pending.gone:
                    continue
                self._current = pending
                try:
                    await self._schedule(pending)
                except Exception as exc:  # a bug here must not leave the queue hanging
                    _log.exception("scheduling %s failed", pending.entry.name)
                    if not pending.gone:
                        pending.future.set_exception(exc)
                self._current = None
        finally:
            self._current = None
            self._loop = None

    async def _schedule(self, pending: Pending) -> None:
        max_loaded = self.settings.max_loaded_models
        while True:
            runner = self.loaded.get(pending.entry.name)
            if runner is not None:
                if not _needs_reload(runner, pending.entry, pending.options):
                    self._hand_over(pending, runner)
                    return
                pending.reload = True
                victim = runner
            elif max_loaded and len(self.loaded) >= max_loaded:
                victim = self._find_victim()
                self._count_eviction(victim)
            else:
                parallel = self._num_parallel(pending.entry)
                size = runner_size(pending.entry, pending.options, parallel)
                if not self.loaded:
                    await self._load(pending, parallel, size, self._vram_alone(pending, size))
                    return
                if self._fits(pending, size):
                    vram = 0 if pending.options.num_gpu == 0 else size
                    await self._load(pending, parallel, size, vram)
                    return
                victim = self._find_victim()
                self._count_eviction(victim)
            self._unloaded = asyncio.Event()
            self._evict(victim)
            await self._unloaded.wait()
            self._unloaded = None

    def _num_parallel(self, entry: ModelEntry) -> int:
        # sched.go load(): embedding models always run with one slot.
        parallel = self.settings.num_parallel
        return 1 if parallel and entry.spec.embedding_only else parallel

    def _free_vram(self) -> int:
        used = sum(r.vram for r in self.loaded.values()) + self._unloading_vram
        return max(self.vram_total - used, 0)

    def _fits(self, pending: Pending, size: int) -> bool:
        if not self.vram_total or pending.options.num_gpu == 0:
            return True
        return size <= self._free_vram() * _FIT_SHARE

    def _vram_alone(self, pending: Pending, size: int) -> int:
        """With nothing else loaded a model loads anyway, as much of it on the GPU as fits."""
        if pending.options.num_gpu == 0:
            return 0
        if not self.vram_total:
            return size
        return min(size, self._free_vram())

    def _find_victim(self) -> Runner:
        """findRunnerToUnload: an idle runner first, else the shortest keep-alive."""
        runners = sorted(self.loaded.values(), key=lambda r: (r.session_ns, r.model))
        for runner in runners:
            if runner.ref_count == 0:
                return runner
        return runners[0]

    def _count_eviction(self, victim: Runner) -> None:
        # Once per victim: the loop may pick the same one again after any unload.
        if not victim.victim:
            _bump(self.counters.evictions, victim.model)

    def _evict(self, victim: Runner) -> None:
        victim.victim = True
        victim.stop_timer()
        victim.session_ns = 0
        if victim.ref_count <= 0:
            self._expire(victim)

    def _hand_over(self, pending: Pending, runner: Runner) -> None:
        if not pending.gone:
            self._use(runner, pending.session_ns)
            pending.future.set_result(runner)

    async def _load(self, pending: Pending, parallel: int, size: int, vram: int) -> None:
        """Start a runner; the loop waits the whole load (llama.Load blocks processPending)."""
        entry = pending.entry
        seconds = self._load_seconds(entry)
        self._loading = pending
        try:
            if seconds > 0 and not pending.gone:
                # Ollama aborts the load when the client that asked for it leaves.
                await asyncio.wait([pending.future], timeout=self.clock.real_seconds(seconds))
        finally:
            self._loading = None
        if pending.gone:
            self.counters.aborted_loads += 1
            return
        session = self.settings.keep_alive_ns if pending.session_ns is None else pending.session_ns
        runner = Runner(entry, pending.options, parallel, size, vram, session, time.time_ns())
        factor = offload_factor(size, vram)
        runner.prompt_work = work_per_token(self._speed(entry, "prompt"), factor)
        runner.decode_work = work_per_token(self._speed(entry, "decode"), factor)
        runner.caches = self._caches(entry, pending.options, parallel)
        self.loaded[entry.name] = runner
        _bump(self.counters.loads, entry.name)
        if pending.reload:
            _bump(self.counters.reloads, entry.name)
        self._hand_over(pending, runner)

    def _caches(self, entry: ModelEntry, options: RunnerOptions, parallel: int) -> PromptCaches:
        s = self.settings
        per_token = max(entry.spec.kv_bytes_per_token, 1)
        host = int(s.cache_ram_mib * (1 << 20) / per_token)
        return PromptCaches(parallel, options.num_ctx, s.slot_prompt_similarity, host)

    def _load_seconds(self, entry: ModelEntry) -> float:
        s = self.settings
        given = s.model_load_times.get(entry.name)
        if given is not None:
            return given
        return s.load_base + s.load_per_gb * entry.spec.size / _GB

    def _speed(self, entry: ModelEntry, kind: str) -> float:
        s = self.settings
        per_model = s.model_decode_speeds if kind == "decode" else s.model_prompt_speeds
        given = per_model.get(entry.name)
        if given is not None:
            return given
        setting: Speed = s.decode_speed if kind == "decode" else s.prompt_speed
        if setting == CATALOG:
            return entry.spec.decode_tps if kind == "decode" else entry.spec.prompt_tps
        return float(setting)

    # -- processCompleted -------------------------------------------------------------

    def finished(self, runner: Runner) -> None:
        """A request using `runner` ended."""
        if runner.unloaded or self._closed:
            return
        runner.ref_count -= 1
        if runner.ref_count > 0:
            return
        if runner.unload_when_idle or runner.session_ns <= 0:
            self._expire(runner)
            return
        if runner.session_ns >= FOREVER_NS:
            runner.stop_timer()
            runner.expires_at_ns = time.time_ns() + FOREVER_NS
            return
        # Idle for the keep-alive, then unload. A timer still armed from an earlier
        # idle turn is reused when it fires no later than this turn's end.
        seconds = self.clock.real_seconds(runner.session_ns / 1e9)
        loop = asyncio.get_running_loop()
        runner.idle_until = loop.time() + seconds
        runner.expires_at_ns = self.clock.wall_ns_after(runner.session_ns)
        if runner.timer is None or runner.timer_at > runner.idle_until:
            self._arm(runner, loop)

    def _arm(self, runner: Runner, loop: asyncio.AbstractEventLoop) -> None:
        runner.stop_timer()
        runner.timer = loop.call_at(runner.idle_until, self._keep_alive_over, runner)
        runner.timer_at = runner.idle_until

    def _keep_alive_over(self, runner: Runner) -> None:
        runner.timer = None
        if runner.unloaded or runner.ref_count > 0 or runner.session_ns >= FOREVER_NS:
            return  # busy again: finished() arms a timer when it goes idle
        loop = asyncio.get_running_loop()
        if runner.idle_until - loop.time() > _TIMER_SLACK:
            self._arm(runner, loop)  # an earlier turn's timer; this turn ends later
            return
        self.counters.expired += 1
        self._expire(runner)

    def _expire(self, runner: Runner) -> None:
        """The expired event: unload now if idle, else as soon as the last request ends."""
        if self.loaded.get(runner.model) is not runner:
            return
        if runner.ref_count > 0:
            runner.unload_when_idle = True
            return
        runner.stop_timer()
        runner.unloaded = True
        del self.loaded[runner.model]
        _bump(self.counters.unloads, runner.model)
        # The GPU's memory is free only once it has recovered (waitForVRAMRecovery).
        self._unloading_vram += runner.vram
        seconds = self.settings.unload_time
        if seconds > 0:
            asyncio.get_running_loop().call_later(
                self.clock.real_seconds(seconds), self._unload_done, runner
            )
        else:
            self._unload_done(runner)

    def _unload_done(self, runner: Runner) -> None:
        self._unloading_vram -= runner.vram
        if self._unloaded is not None:
            self._unloaded.set()

    def expire_model(self, entry: ModelEntry) -> None:
        """expireRunner: unload now, or when the runner's last request ends."""
        runner = self.loaded.get(entry.name)
        if runner is None:
            return
        runner.expires_at_ns = time.time_ns()
        runner.stop_timer()
        runner.session_ns = 0
        if runner.ref_count <= 0:
            self._expire(runner)

    # -- views ------------------------------------------------------------------------

    def loaded_models(self) -> list[tuple[Runner, int]]:
        """/api/ps: loaded runners and their expiry (wall ns), longest remaining first."""
        now = time.time_ns()
        rows = []
        for runner in self.loaded.values():
            expires = runner.expires_at_ns
            if not expires:
                # Ollama estimates a runner that has not gone idle yet from its keep-alive.
                session = runner.session_ns
                scaled = session if session >= FOREVER_NS else int(session / self.clock.scale)
                expires = now + scaled
            rows.append((runner, expires))
        rows.sort(key=lambda row: row[1] // 1_000_000_000, reverse=True)
        return rows

    def view(self) -> dict[str, Any]:
        """The true state, for /_emulator/scheduler (Ollama exposes none of it)."""
        now = time.perf_counter_ns()
        scale = self.clock.scale

        def waited(pending: Pending) -> float:
            return round((now - pending.enqueued_ns) * scale / 1e9, 3)

        loaded = []
        for runner, expires in self.loaded_models():
            slots = runner.slots
            busy = runner.num_parallel - slots.free if slots is not None else None
            loaded.append(
                {
                    "model": runner.model,
                    "options": asdict(runner.options),
                    "size": runner.size,
                    "size_vram": runner.vram,
                    "context_length": runner.context_length,
                    "num_parallel": runner.num_parallel,
                    "in_flight": runner.ref_count,
                    "computing": busy,
                    "waiting_for_slot": slots.waiting if slots is not None else 0,
                    "keep_alive_s": None
                    if runner.session_ns >= FOREVER_NS
                    else runner.session_ns / 1e9,
                    "expires_at_ns": expires,
                    "victim": runner.victim,
                    "unload_when_idle": runner.unload_when_idle,
                    "served": runner.served,
                    "prompt_cache": runner.caches.view(),
                }
            )
        pending = [
            {"model": p.entry.name, "waited_s": waited(p)} for p in self._pending if not p.gone
        ]
        current = self._current
        return {
            "settings": {
                **asdict(self.settings),
                "time_scale": scale,
                "default_num_ctx": self.default_ctx,
            },
            "vram": {
                "total": self.vram_total or None,
                "used": sum(r.vram for r in self.loaded.values()),
                "unloading": self._unloading_vram,
            },
            "loaded": loaded,
            "scheduling": None
            if current is None or current.gone
            else {
                "model": current.entry.name,
                "loading": self._loading is current,
                "waited_s": waited(current),
            },
            "pending": pending,
            "pending_count": len(pending),
            "gpu_load": round(self.gpu.load, 3),
            "gpu_busy_s": round(self.gpu.busy_seconds(), 3),
            "counters": asdict(self.counters),
        }

    def close(self) -> None:
        """Stop timers and fail waiting requests: this scheduler is being replaced."""
        self._closed = True
        for runner in self.loaded.values():
            runner.stop_timer()
        for pending in [*self._pending, self._current]:
            if pending is not None and not pending.gone:
                pending.future.set_exception(SchedulerReset("the emulator was reset"))
        self._pending.clear()
        if self._loop is not None:
            self._loop.cancel()
