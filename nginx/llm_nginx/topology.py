"""Where nginx finds its peers, files and ports: everything the stack config does not say.

The same config renders for two places: the nginx container of a Docker deploy and a
plain nginx process on loopback (the local stack and the tests). `NginxTopology` is
the whole difference between them; `container_topology` and `loopback_topology` build
the two usual ones so that neither caller re-decides paths or ports.

Every value ends up verbatim in nginx.conf, so each is checked here: a stray `;`, `{`
or space in an address or path would otherwise change the meaning of the config.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llm_config.model import StackConfig

# host:port with a DNS name or IPv4 address, or [IPv6]:port.
_ADDRESS_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):\d{1,5}$"
)
# An nginx `listen` value: port, addr:port or [addr]:port.
_LISTEN_RE = re.compile(r"^(?:(?:[0-9.]+|\[[0-9A-Fa-f:.]+\]|localhost):)?\d{1,5}$")
_PATH_RE = re.compile(r"^/[^\s;{}'\"$\\#]*$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}(?: [a-z_][a-z0-9_-]{0,31})?$")
_RESOLVER_RE = re.compile(r"^(?:[0-9.]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")

# Inside the nginx container (the official image's layout; see `container_topology`).
CONTAINER_CONF_PATH = "/etc/nginx/nginx.conf"
CONTAINER_CERT_PATH = "/etc/nginx/tls/edge.crt"
CONTAINER_KEY_PATH = "/etc/nginx/tls/edge.key"
CONTAINER_RUNTIME_DIR = "/var/cache/nginx"
CONTAINER_HTTPS_PORT = 443
CONTAINER_HTTP_PORT = 80
CONTAINER_USER = "nginx"
# Docker's embedded DNS on user-defined networks.
DOCKER_DNS = "127.0.0.11"
# The path nginx-prometheus-exporter scrapes on `status_listen`.
STUB_STATUS_PATH = "/stub_status"


@dataclass(frozen=True)
class NginxTopology:
    """The addresses, ports and paths one rendered nginx.conf refers to."""

    # "host:port" of each gateway replica and each Ollama instance; no Ollama: no
    # balancer (an edge alone, where the gateway routes to the instances itself).
    gateways: Sequence[str]
    ollamas: Sequence[str]
    # `listen` values: "443" in a container, "127.0.0.1:40443" on loopback.
    edge_https_listen: str
    edge_http_listen: str
    # The port clients use for https (the redirect's Location); 443 is left out of it.
    https_public_port: int
    # The internal Ollama balancer and the stub_status endpoint for the exporter.
    balancer_listen: str
    status_listen: str
    # Addresses/CIDRs allowed on the balancer and status listeners; all else gets 403.
    internal_allow: Sequence[str]
    cert_path: str
    key_path: str
    # pid file and every temp path live here, so nginx never needs a system directory.
    runtime_dir: str
    access_log: str
    error_log: str
    # Set where upstream names must be re-resolved while running (Docker's DNS, as a
    # replaced container comes back with a new address). Needs nginx >= 1.27.3, whose
    # upstream `server ... resolve` is what re-resolves.
    resolver: str | None = None
    # `user` directive; None where nginx runs as whoever starts it (non-root).
    user: str | None = None
    # None: one per core ("auto"), which counts the host's cores; a container sets
    # it from its CPU limit.
    worker_processes: int | None = None
    worker_connections: int = field(default=4096)
    # proxy_next_upstream_tries towards the gateways; None: one per `gateways` entry.
    # A single name that resolves to several replicas (a cluster's headless Service)
    # needs it set, or a refused connection is never tried on another replica.
    gateway_tries: int | None = None
    # Proxies in front of the edge whose X-Forwarded-For names the client (nginx's
    # realip module); empty: the connection's address is the client's.
    real_ip_from: Sequence[str] = ()
    # Also listen on IPv6 ([::]:port) where a listen value is a bare port, and resolve
    # AAAA records (a dual-stack cluster).
    ipv6: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "gateways", tuple(self.gateways))
        object.__setattr__(self, "ollamas", tuple(self.ollamas))
        object.__setattr__(self, "internal_allow", tuple(self.internal_allow))
        object.__setattr__(self, "real_ip_from", tuple(self.real_ip_from))
        problems: list[str] = []
        for name in ("gateways", "ollamas"):
            values: tuple[str, ...] = getattr(self, name)
            if not values and name == "gateways":
                problems.append(f"{name}: at least one host:port is needed")
            problems += [f"{name}: {v!r} is not host:port" for v in values if not _address(v)]
            if len(set(values)) != len(values):
                problems.append(f"{name}: duplicate addresses {sorted(values)}")
        for name in ("edge_https_listen", "edge_http_listen", "balancer_listen", "status_listen"):
            if not _listen(getattr(self, name)):
                problems.append(f"{name}: {getattr(self, name)!r} is not port or addr:port")
        listens = [
            self.edge_https_listen,
            self.edge_http_listen,
            self.balancer_listen,
            self.status_listen,
        ]
        if len(set(listens)) != len(listens):
            problems.append(f"listen values must differ: {listens}")
        if not 1 <= self.https_public_port <= 65535:
            problems.append(f"https_public_port: {self.https_public_port} is not a port")
        if not self.internal_allow:
            problems.append("internal_allow: at least one address or CIDR is needed")
        for name in ("internal_allow", "real_ip_from"):
            for value in getattr(self, name):
                try:
                    ipaddress.ip_network(value, strict=False)
                except ValueError:
                    problems.append(f"{name}: {value!r} is not an address or CIDR")
        for name in ("cert_path", "key_path", "runtime_dir", "access_log", "error_log"):
            if not _PATH_RE.match(getattr(self, name)):
                problems.append(f"{name}: {getattr(self, name)!r} is not a plain absolute path")
        if self.resolver is not None and not _RESOLVER_RE.match(self.resolver):
            problems.append(f"resolver: {self.resolver!r} is not an IP address")
        if self.user is not None and not _USER_RE.match(self.user):
            problems.append(f"user: {self.user!r} is not 'user' or 'user group'")
        if self.worker_processes is not None and not 1 <= self.worker_processes <= 64:
            problems.append(f"worker_processes: {self.worker_processes} is out of 1..64")
        if self.gateway_tries is not None and not 1 <= self.gateway_tries <= 64:
            problems.append(f"gateway_tries: {self.gateway_tries} is out of 1..64")
        if not 64 <= self.worker_connections <= 65536:
            problems.append(f"worker_connections: {self.worker_connections} is out of 64..65536")
        if problems:
            raise ValueError("invalid nginx topology:\n" + "\n".join(f"  - {p}" for p in problems))


def _address(value: str) -> bool:
    return bool(_ADDRESS_RE.match(value)) and 1 <= int(value.rsplit(":", 1)[1]) <= 65535


def _listen(value: str) -> bool:
    return bool(_LISTEN_RE.match(value)) and 1 <= int(value.rsplit(":", 1)[-1]) <= 65535


def container_topology(
    config: StackConfig,
    gateways: Sequence[str],
    ollamas: Sequence[str],
    *,
    resolver: str | None = DOCKER_DNS,
) -> NginxTopology:
    """The topology of the nginx container of a Docker deploy.

    `gateways`/`ollamas` are "name:port" on the internal network. The container listens
    on 443/80 (published on the host as edge.httpsPort/httpPort) and on the balancer
    and status ports, which only the internal subnet (and the container itself, for its
    healthcheck) may use. Upload the cert and key to CONTAINER_CERT_PATH/KEY_PATH and
    the rendered text to CONTAINER_CONF_PATH.
    """
    return NginxTopology(
        gateways=gateways,
        ollamas=ollamas,
        edge_https_listen=str(CONTAINER_HTTPS_PORT),
        edge_http_listen=str(CONTAINER_HTTP_PORT),
        https_public_port=config.edge.https_port,
        balancer_listen=str(config.balancer.port),
        status_listen=str(config.balancer.status_port),
        internal_allow=(config.network.internal_subnet, "127.0.0.1"),
        cert_path=CONTAINER_CERT_PATH,
        key_path=CONTAINER_KEY_PATH,
        runtime_dir=CONTAINER_RUNTIME_DIR,
        access_log="/dev/stdout",
        error_log="/dev/stderr",
        resolver=resolver,
        user=CONTAINER_USER,
    )


def loopback_topology(
    runtime_dir: Path,
    gateways: Sequence[str],
    ollamas: Sequence[str],
    *,
    https_port: int,
    http_port: int,
    balancer_port: int,
    status_port: int,
    cert_path: Path,
    key_path: Path,
    worker_processes: int | None = None,
) -> NginxTopology:
    """A plain nginx process on 127.0.0.1 whose files all live under `runtime_dir`.

    Internal listeners admit 127.0.0.1 only (other loopback addresses, such as
    127.0.0.2, count as "outside"). Logs go to `runtime_dir`/access.log and error.log.
    """
    return NginxTopology(
        gateways=gateways,
        ollamas=ollamas,
        edge_https_listen=f"127.0.0.1:{https_port}",
        edge_http_listen=f"127.0.0.1:{http_port}",
        https_public_port=https_port,
        balancer_listen=f"127.0.0.1:{balancer_port}",
        status_listen=f"127.0.0.1:{status_port}",
        internal_allow=("127.0.0.1",),
        cert_path=str(cert_path),
        key_path=str(key_path),
        runtime_dir=str(runtime_dir),
        access_log=str(runtime_dir / "access.log"),
        error_log=str(runtime_dir / "error.log"),
        user=root_user_directive(),
        worker_processes=worker_processes,
    )


def root_user_directive() -> str | None:
    """`root` when this process is root, else None.

    A root master without a `user` directive runs its workers as `nobody`, who cannot
    enter a private temp dir to spill a large request body; any other user runs the
    workers as itself, where `user` would only be ignored with a warning.
    """
    return "root" if os.geteuid() == 0 else None
