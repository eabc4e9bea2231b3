"""The stack under test on loopback: Redis, emulated Ollama instances, nginx, gateways.

nginx is the project's own render (`llm_nginx.render_nginx_conf` on a
`loopback_topology`, through tests.support's NginxServer, as the local stack does), so
least-conn is exactly the balancer a stack deploys. Gateways get the environment the
stack gives them (`llm_stack.gateway_environment`) from a StackConfig describing this
bench, with every gateway time setting divided by the emulator's time scale: the
emulator runs `scale` times faster than real time, the gateway in real time.

Gateways are started for each run (fresh queues, estimates and fairness state) and
stopped after it; the rest lives for the whole invocation, the emulators reset
between runs (`/_emulator/reset`: nothing loaded, counters at zero).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from llm_config.api_keys import keys_file_text
from llm_config.model import GatewayConfig, OllamaConfig, QueueConfig, StackConfig
from llm_gateway.contract import digest_of, mint_key
from llm_stack.gateway_env import gateway_environment
from prometheus_client.parser import text_string_to_metric_families

from bench.system.workloads import TWO_GPUS, Layout, Mode
from tests.support.nginx_server import NginxServer, make_tls_files
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "bench-admin"
# Keys never limit: every request is real work, and only the router decides who waits.
UNLIMITED_RPM = 10_000_000
UNLIMITED_CONCURRENCY = 100_000
# The stack's defaults in simulated seconds, scaled to the gateway's real time.
QUEUE_DEADLINE_SIM = 120.0
LOAD_PATIENCE_SIM = 20.0
POLL_REAL = 0.1


@dataclass(frozen=True)
class Counters:
    """The emulators' scheduler counters, summed over the instances."""

    loads: int = 0
    reloads: int = 0
    evictions: int = 0
    rejected: int = 0  # Ollama-side 503s (OLLAMA_MAX_QUEUE exceeded)
    aborted_loads: int = 0
    per_instance: tuple[dict[str, Any], ...] = ()
    # Prompt tokens of every request, and those evaluated (not in a slot's cache).
    prompt_tokens: int = 0
    prompt_evaluated: int = 0
    # Per instance: prompt tokens evaluated, and simulated seconds its GPU computed.
    evaluated: tuple[int, ...] = ()
    busy: tuple[float, ...] = ()

    @classmethod
    def from_views(cls, views: Sequence[Mapping[str, Any]]) -> Counters:
        counters = [dict(view["counters"]) for view in views]
        return cls(
            loads=sum(sum(c["loads"].values()) for c in counters),
            reloads=sum(sum(c["reloads"].values()) for c in counters),
            evictions=sum(sum(c["evictions"].values()) for c in counters),
            rejected=sum(int(c["rejected"]) for c in counters),
            aborted_loads=sum(int(c["aborted_loads"]) for c in counters),
            per_instance=tuple(counters),
            prompt_tokens=sum(int(c.get("prompt_tokens", 0)) for c in counters),
            prompt_evaluated=sum(int(c.get("prompt_evaluated", 0)) for c in counters),
            evaluated=tuple(int(c.get("prompt_evaluated", 0)) for c in counters),
            busy=tuple(float(v.get("gpu_busy_s", 0.0)) for v in views),
        )

    def minus(self, before: Counters) -> Counters:
        def each(now: tuple[Any, ...], then: tuple[Any, ...]) -> tuple[Any, ...]:
            # An instance restarted since `before` counts from zero again.
            return tuple(n - t if n >= t else n for n, t in zip(now, then, strict=False))

        return Counters(
            self.loads - before.loads,
            self.reloads - before.reloads,
            self.evictions - before.evictions,
            self.rejected - before.rejected,
            self.aborted_loads - before.aborted_loads,
            self.per_instance,
            self.prompt_tokens - before.prompt_tokens,
            self.prompt_evaluated - before.prompt_evaluated,
            each(self.evaluated, before.evaluated),
            each(self.busy, before.busy),
        )


def emulator_argv(port: int, scale: float, layout: Layout = TWO_GPUS) -> list[str]:
    return [
        sys.executable, "-m", "llm_emulator", "--host", "127.0.0.1", "--port", str(port),
        "--ollama-defaults", "--vram", str(layout.vram_gb),
        "--context-length", str(layout.context_length), "--num-parallel",
        str(layout.num_parallel), "--time-scale", f"{scale:g}",
        "--models", ",".join(layout.models), *layout.flags,
    ]  # fmt: skip


def stack_config(scale: float, mode: Mode | None = None, layout: Layout = TWO_GPUS) -> StackConfig:
    """The stack this bench stands for; `mode` sets the gateway's routing."""
    gateway = GatewayConfig(
        routing=mode.routing if mode else "least-conn",
        runner_options=mode.runner_options if mode else "strip",
        replicas=mode.replicas if mode else 1,
        share_in_flight=mode.share_in_flight if mode else False,
        **({} if mode is None or mode.affinity is None else {"prefix_affinity": mode.affinity}),
        cache_mode="off",
        requests_per_minute=UNLIMITED_RPM,
        max_concurrent_per_key=UNLIMITED_CONCURRENCY,
        poll_seconds=POLL_REAL,
        queue=QueueConfig(
            deadline_seconds=QUEUE_DEADLINE_SIM / scale,
            load_patience_seconds=LOAD_PATIENCE_SIM / scale,
        ),
    )
    ollama = OllamaConfig(
        instances=layout.instances,
        models=list(layout.models),
        num_parallel=layout.num_parallel,
        max_loaded_models=3,
        context_length=layout.context_length,
        vram_gb=layout.vram_gb,
    )
    return StackConfig(environment="test", ollama=ollama, gateway=gateway)


class Gateways:
    """The gateway replicas of one run."""

    def __init__(self, procs: list[ManagedProcess], urls: list[str], mode: Mode) -> None:
        self.procs = procs
        self.urls = urls
        self.mode = mode

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def exceptions(self) -> dict[str, int]:
        """Exceptions the replicas logged (each traceback's last line), with counts."""
        found: dict[str, int] = {}
        for proc in self.procs:
            lines = proc.log_text().splitlines()
            for index, line in enumerate(lines):
                if not line.startswith("Traceback"):
                    continue
                end = index + 1
                while end < len(lines) and lines[end].startswith((" ", "\t")):
                    end += 1
                if end < len(lines):
                    found[lines[end][:200]] = found.get(lines[end][:200], 0) + 1
        return found


class BenchStack:
    def __init__(
        self, workdir: Path, scale: float, key_names: Iterable[str], layout: Layout = TWO_GPUS
    ) -> None:
        self.workdir = workdir
        self.scale = scale
        self.layout = layout
        self.keys = {name: mint_key() for name in [*key_names, ADMIN_KEY]}
        self.redis: RedisServer | None = None
        self.emulators: list[ManagedProcess] = []
        self.emulator_urls: list[str] = []
        self.nginx: NginxServer | None = None
        self.keys_file = workdir / "keys.json"
        self._http = httpx.Client(timeout=30.0)
        self._gateway_count = 0

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> BenchStack:
        self.redis = RedisServer(self.workdir).start()
        ports = [free_port() for _ in range(self.layout.instances)]
        for index, port in enumerate(ports):
            log = self.workdir / f"emulator-{index}.log"
            argv = emulator_argv(port, self.scale, self.layout)
            self.emulators.append(ManagedProcess(argv, port, log))
        with ThreadPoolExecutor(len(ports)) as pool:
            list(pool.map(lambda proc: proc.start(), self.emulators))
        self.emulator_urls = [f"http://127.0.0.1:{port}" for port in ports]
        # The edge needs gateway addresses to render; nothing here goes through the edge.
        self.nginx = NginxServer(
            self.workdir / "nginx",
            stack_config(self.scale, layout=self.layout),
            make_tls_files(self.workdir / "tls"),
            gateways=[f"127.0.0.1:{free_port()}"],
            ollamas=[f"127.0.0.1:{port}" for port in ports],
        ).start()
        self.keys_file.write_text(keys_file_text(self._key_entries()))
        return self

    def stop(self) -> None:
        self._http.close()
        if self.nginx is not None:
            self.nginx.stop()
        for proc in self.emulators:
            proc.stop()
        if self.redis is not None:
            self.redis.stop()

    def _key_entries(self) -> dict[str, Any]:
        entries: dict[str, Any] = {}
        for name, key in self.keys.items():
            entry: dict[str, Any] = {
                "digest": digest_of(key),
                "requestsPerMinute": UNLIMITED_RPM,
                "maxConcurrent": UNLIMITED_CONCURRENCY,
                "priorities": ["batch"] if name == "batch" else ["interactive", "batch"],
            }
            if name == ADMIN_KEY:
                entry["admin"] = True
            entries[name] = entry
        return entries

    @property
    def balancer_url(self) -> str:
        assert self.nginx is not None
        return self.nginx.balancer_url

    # -- gateways --------------------------------------------------------------------

    def gateway_env(self, mode: Mode, port: int, upstream: str | None = None) -> dict[str, str]:
        assert self.redis is not None
        env = gateway_environment(
            stack_config(self.scale, mode, self.layout),
            upstream_url=upstream or self.balancer_url,
            redis_url=self.redis.url,
            instance_urls=self.emulator_urls,
            api_keys_file=str(self.keys_file),
            host="127.0.0.1",
            port=port,
        )
        env["GATEWAY_LOG_LEVEL"] = "warning"
        return env

    def start_gateways(self, mode: Mode) -> Gateways:
        """The mode's replicas; pinned: one gateway per instance, straight to it."""
        procs: list[ManagedProcess] = []
        count = len(self.emulator_urls) if mode.pinned else mode.replicas
        ports = [free_port() for _ in range(count)]
        for number, port in enumerate(ports):
            self._gateway_count += 1
            log = self.workdir / f"gateway-{self._gateway_count}.log"
            argv = [sys.executable, "-m", "llm_gateway"]
            upstream = self.emulator_urls[number] if mode.pinned else None
            env = self.gateway_env(mode, port, upstream)
            procs.append(ManagedProcess(argv, port, log, env=env, cwd=ROOT))
        try:
            with ThreadPoolExecutor(len(procs)) as pool:
                list(pool.map(lambda proc: proc.start(), procs))
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url in urls:
                self._http.get(f"{url}/health").raise_for_status()
        except BaseException:
            for proc in procs:
                proc.stop()
            raise
        return Gateways(procs, urls, mode)

    def pids(self, gateways: Gateways | None = None) -> dict[str, list[int]]:
        """The stack's processes by part (nginx: its master; workers are its children)."""
        assert self.nginx is not None
        master = Path(self.nginx.topology.runtime_dir) / "nginx.pid"
        groups = {
            "emulators": [p.proc.pid for p in self.emulators if p.proc is not None],
            "nginx": [int(master.read_text().strip())] if master.exists() else [],
        }
        if gateways is not None:
            groups["gateways"] = [p.proc.pid for p in gateways.procs if p.proc is not None]
        return groups

    def shed_reasons(self, gateways: Gateways) -> dict[str, int]:
        """The gateways' own count of 503s by reason (llm_shed), summed over replicas."""
        reasons: dict[str, int] = {}
        for url in gateways.urls:
            text = self._http.get(f"{url}/metrics").text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "llm_shed_total":
                        reason = sample.labels["reason"]
                        reasons[reason] = reasons.get(reason, 0) + int(sample.value)
        return reasons

    def admin_queue(self, url: str) -> Any:
        response = self._http.get(
            f"{url}/admin/queue", headers={"Authorization": f"Bearer {self.keys[ADMIN_KEY]}"}
        )
        response.raise_for_status()
        return response.json()

    # -- the emulators -----------------------------------------------------------------

    def reset(self) -> None:
        for url in self.emulator_urls:
            self._http.post(f"{url}/_emulator/reset").raise_for_status()

    def preload(self, models: Iterable[str]) -> None:
        """Load each model on every instance (an empty generate loads, as in Ollama)."""
        requests = [(url, model) for model in models for url in self.emulator_urls]

        def load(pair: tuple[str, str]) -> None:
            url, model = pair
            response = self._http.post(f"{url}/api/generate", json={"model": model, "prompt": ""})
            response.raise_for_status()

        if requests:
            with ThreadPoolExecutor(len(self.emulator_urls)) as pool:
                list(pool.map(load, requests))

    def stop_instance(self, index: int) -> None:
        """The instance's process goes away (its connections cut, as Ollama's are)."""
        self.emulators[index].stop()

    def start_instance(self, index: int) -> None:
        """The instance starts again on its port, cold: nothing loaded."""
        self.emulators[index].start()

    def scheduler_views(self) -> list[dict[str, Any]]:
        views = []
        for url in self.emulator_urls:
            response = self._http.get(f"{url}/_emulator/scheduler")
            response.raise_for_status()
            views.append(response.json())
        return views

    def counters(self) -> Counters:
        return Counters.from_views(self.scheduler_views())
