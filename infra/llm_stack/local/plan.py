"""What a local run starts, where, and how it knows each part is ready: pure data.

`make_plan` decides argv, environment, ports, readiness checks and log files of every
process from the stack config and the chosen ports, without touching the host, so the
whole layout is testable without starting anything. The rendered files it refers to
are written by `files.py`; the supervisor runs the services in `tier` order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

from llm_config.model import StackConfig
from llm_monitoring.prometheus import CONFIG_FILE_NAME, ScrapeTargets, prometheus_args
from llm_nginx import STUB_STATUS_PATH, NginxTopology, loopback_topology

from llm_stack.gateway_env import gateway_environment
from llm_stack.local.binaries import Binaries
from llm_stack.local.layout import Layout
from llm_stack.local.ollama import RealOllama
from llm_stack.local.ports import LOOPBACK, PortAssignment
from llm_stack.local.readiness import ReadyCheck
from llm_stack.local.source import StackSource
from llm_stack.shared.labels import (
    GATEWAY,
    NGINX,
    NGINX_EXPORTER,
    OLLAMA,
    PROMETHEUS,
    REDIS,
    REDIS_CACHE,
)

# Seconds a service may take to become ready at start-up (a loaded 2-core box is slow to
# import a Python app; Prometheus replays its WAL).
READY_TIMEOUTS = {
    REDIS: 15.0,
    REDIS_CACHE: 15.0,
    OLLAMA: 30.0,
    NGINX: 15.0,
    GATEWAY: 45.0,
    NGINX_EXPORTER: 15.0,
    PROMETHEUS: 45.0,
}
STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class LocalSecrets:
    """Minted on a stack's first run and kept (`credentials.py`); never printed except
    the dev keys, which the user needs."""

    redis_password: str = field(repr=False)
    dev_key: str = field(repr=False)
    # The `dev-admin` key: the admin endpoints and nothing the dev key lacks.
    admin_key: str = field(repr=False, default="")


@dataclass(frozen=True)
class ServiceSpec:
    """One process of the stack."""

    name: str
    role: str
    # Services of one tier start together; a tier starts once the previous one is ready.
    tier: int
    argv: tuple[str, ...]
    # Variables set for this process on top of the (cleaned) environment of the stack.
    env: Mapping[str, str]
    port: int
    ready: ReadyCheck
    ready_timeout: float
    stop_grace: float
    log: Path
    cwd: Path
    # Extra "name -> port" a user may need (nginx: https, http, balancer, status).
    ports: Mapping[str, int] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"


@dataclass(frozen=True)
class LocalPlan:
    source: StackSource
    layout: Layout
    ports: PortAssignment
    # None: emulators on `ports.emulators`.
    real_ollama: RealOllama | None
    nginx_topology: NginxTopology
    scrape_targets: ScrapeTargets
    services: tuple[ServiceSpec, ...]

    @property
    def config(self) -> StackConfig:
        return self.source.config

    @property
    def emulated(self) -> bool:
        return self.real_ollama is None

    @property
    def upstreams(self) -> list[str]:
        """host:port of each Ollama the balancer sends to."""
        if self.real_ollama is not None:
            return [self.real_ollama.address]
        return [f"{LOOPBACK}:{p}" for p in self.ports.emulators]

    @property
    def edge_url(self) -> str:
        # `localhost` is in the certificate whatever edge.hostname says, and resolves here.
        return f"https://localhost:{self.ports.https}"

    @property
    def balancer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.balancer}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.prometheus}"

    def tiers(self) -> list[list[ServiceSpec]]:
        order = sorted({s.tier for s in self.services})
        return [[s for s in self.services if s.tier == t] for t in order]

    def service(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        raise KeyError(name)


def redis_url(port: int, password: str) -> str:
    return f"redis://:{quote(password, safe='')}@{LOOPBACK}:{port}/0"


def nginx_topology(
    layout: Layout, ports: PortAssignment, upstreams: Sequence[str]
) -> NginxTopology:
    """The loopback topology of the one nginx, logs moved next to the other services'."""
    topology = loopback_topology(
        layout.nginx,
        [f"{LOOPBACK}:{p}" for p in ports.gateways],
        upstreams,
        https_port=ports.https,
        http_port=ports.http,
        balancer_port=ports.balancer,
        status_port=ports.status,
        cert_path=layout.cert,
        key_path=layout.key,
    )
    return replace(
        topology,
        access_log=str(layout.log("nginx-access")),
        error_log=str(layout.log("nginx-error")),
    )


def scrape_targets(ports: PortAssignment) -> ScrapeTargets:
    return ScrapeTargets(
        gateways=[f"{LOOPBACK}:{p}" for p in ports.gateways],
        nginx_exporter=f"{LOOPBACK}:{ports.nginx_exporter}",
        gpu_exporters=[],  # no GPU exporter runs locally
        prometheus=f"{LOOPBACK}:{ports.prometheus}",
    )


def _spec(
    layout: Layout,
    name: str,
    role: str,
    tier: int,
    argv: Sequence[str],
    port: int,
    ready: ReadyCheck,
    *,
    env: Mapping[str, str] | None = None,
    stop_grace: float = STOP_GRACE_SECONDS,
    ports: Mapping[str, int] | None = None,
) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        role=role,
        tier=tier,
        argv=tuple(argv),
        env=dict(env or {}),
        port=port,
        ready=ready,
        ready_timeout=READY_TIMEOUTS[role],
        stop_grace=stop_grace,
        log=layout.log(name),
        cwd=layout.workdir,
        ports=dict(ports or {}),
    )


def emulator_args(config: StackConfig) -> list[str]:
    """An emulator that schedules like the stack's Ollama (the same OLLAMA_* settings:
    slots, loaded models, queue, keep-alive), with instant loads and tokens."""
    ollama = config.ollama
    args = ["--models", ",".join(ollama.models)]
    args += ["--num-parallel", str(ollama.num_parallel)]
    args += ["--max-loaded-models", str(ollama.max_loaded_models)]
    args += ["--max-queue", str(ollama.max_queue), "--keep-alive", ollama.keep_alive]
    if ollama.context_length is not None:
        args += ["--context-length", str(ollama.context_length)]
    return args


def make_plan(
    source: StackSource,
    layout: Layout,
    ports: PortAssignment,
    binaries: Binaries,
    secrets: LocalSecrets,
    real_ollama: RealOllama | None,
) -> LocalPlan:
    config = source.config
    if real_ollama is None and len(ports.emulators) != config.ollama.instances:
        raise ValueError(
            f"{config.ollama.instances} Ollama instances but {len(ports.emulators)} emulator ports"
        )
    upstreams = (
        [real_ollama.address]
        if real_ollama is not None
        else [f"{LOOPBACK}:{p}" for p in ports.emulators]
    )
    topology = nginx_topology(layout, ports, upstreams)
    targets = scrape_targets(ports)
    loop = f"http://{LOOPBACK}"
    services: list[ServiceSpec] = [
        _spec(
            layout, "redis", REDIS, 0, [binaries.redis_server, str(layout.redis_conf)],
            ports.redis, ReadyCheck([ports.redis], redis_password=secrets.redis_password),
        ),
        _spec(
            layout, "redis-cache", REDIS_CACHE, 0,
            [binaries.redis_server, str(layout.redis_cache_conf)],
            ports.redis_cache,
            ReadyCheck([ports.redis_cache], redis_password=secrets.redis_password),
        ),
    ]  # fmt: skip
    if real_ollama is None:
        for index, port in enumerate(ports.emulators):
            argv = [binaries.python, "-m", "llm_emulator", "--host", LOOPBACK, "--port", str(port)]
            argv += emulator_args(config)
            services.append(
                _spec(
                    layout, f"ollama-{index}", OLLAMA, 1, argv, port,
                    ReadyCheck([port], [f"{loop}:{port}/api/version"]),
                )
            )  # fmt: skip
    nginx_ports = {
        "https": ports.https,
        "http": ports.http,
        "balancer": ports.balancer,
        "status": ports.status,
    }
    services.append(
        _spec(
            layout, "nginx", NGINX, 2,
            [
                binaries.nginx, "-p", str(layout.nginx), "-c", str(layout.nginx_conf),
                "-e", topology.error_log, "-g", "daemon off;",
            ],
            ports.https,
            ReadyCheck(
                list(nginx_ports.values()),
                # The balancer answering from an Ollama proves both nginx roles work.
                [
                    f"{loop}:{ports.status}{STUB_STATUS_PATH}",
                    f"{loop}:{ports.balancer}/api/version",
                ],
            ),
            ports=nginx_ports,
        )
    )  # fmt: skip
    redis = redis_url(ports.redis, secrets.redis_password)
    for index, port in enumerate(ports.gateways):
        env = gateway_environment(
            config,
            upstream_url=f"{loop}:{ports.balancer}",
            instance_urls=[f"http://{address}" for address in upstreams],
            redis_url=redis,
            cache_redis_url=redis_url(ports.redis_cache, secrets.redis_password),
            api_keys_file=str(layout.keys_file),
            host=LOOPBACK,
            port=port,
        )
        if config.gateway.workers > 1:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(layout.gateway_metrics(index))
        services.append(
            _spec(
                layout, f"gateway-{index}", GATEWAY, 3,
                [binaries.python, "-m", "llm_gateway"], port,
                ReadyCheck([port], [f"{loop}:{port}/health"]),
                env=env,
                # The gateway drains open streams for its grace period; then it is killed.
                stop_grace=config.gateway.shutdown_grace_seconds + 5,
            )
        )  # fmt: skip
    services.append(
        _spec(
            layout, "nginx-exporter", NGINX_EXPORTER, 4, [binaries.nginx_exporter],
            ports.nginx_exporter,
            ReadyCheck([ports.nginx_exporter], [f"{loop}:{ports.nginx_exporter}/metrics"]),
            # Debian's 0.11 reads these (its flags are single-dash, unlike the image's).
            env={
                "SCRAPE_URI": f"{loop}:{ports.status}{STUB_STATUS_PATH}",
                "LISTEN_ADDRESS": f"{LOOPBACK}:{ports.nginx_exporter}",
            },
        )
    )  # fmt: skip
    services.append(
        _spec(
            layout, "prometheus", PROMETHEUS, 5,
            [
                binaries.prometheus,
                *prometheus_args(
                    config,
                    str(layout.prometheus / CONFIG_FILE_NAME),
                    str(layout.prometheus_data),
                    f"{LOOPBACK}:{ports.prometheus}",
                ),
            ],
            ports.prometheus,
            ReadyCheck([ports.prometheus], [f"{loop}:{ports.prometheus}/-/ready"]),
        )
    )  # fmt: skip
    return LocalPlan(
        source=source,
        layout=layout,
        ports=ports,
        real_ollama=real_ollama,
        nginx_topology=topology,
        scrape_targets=targets,
        services=tuple(services),
    )
