"""Ports of a local run: the configured edge ports (checked free) and free loopback ports.

Everything listens on 127.0.0.1, never on a wildcard. Only the edge uses the ports the
stack config names (unless --free-ports); every internal service gets a port the
kernel hands out, so two local stacks, or a stack and the tests, never collide.
"""

from __future__ import annotations

import errno
import socket
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from llm_config.model import StackConfig

from llm_stack.local.errors import LocalStackError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class PortAssignment:
    """Every port of one local run, all on 127.0.0.1."""

    https: int
    http: int
    # The state Redis and the response cache's.
    redis: int
    redis_cache: int
    balancer: int
    status: int
    gateways: tuple[int, ...]
    emulators: tuple[int, ...]
    nginx_exporter: int
    prometheus: int

    def all(self) -> list[int]:
        return [
            self.https,
            self.http,
            self.redis,
            self.redis_cache,
            self.balancer,
            self.status,
            *self.gateways,
            *self.emulators,
            self.nginx_exporter,
            self.prometheus,
        ]


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct ports nothing listens on now (all held open until all are picked)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_available(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could bind host:port now (SO_REUSEADDR, as nginx binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
        return True


def check_edge_ports(config: StackConfig, source: Path) -> None:
    """The configured edge ports must be free on 127.0.0.1; the error names the key."""
    edge = config.edge
    for key, port in (("edge.httpsPort", edge.https_port), ("edge.httpPort", edge.http_port)):
        if not port_available(port):
            raise LocalStackError(
                f"port {port} on {LOOPBACK} (llm-stack:{key} in {source}) is already in use "
                "or not allowed for this user",
                f"stop what listens there, set another port in the stack file "
                f"(llm-stack:{key}), or run with --free-ports",
            )


def assign_ports(
    config: StackConfig, *, use_free_edge_ports: bool, emulators: int
) -> PortAssignment:
    """Configured edge ports (or free ones) and free ports for everything internal."""
    replicas = config.gateway.replicas
    configured = {config.edge.https_port, config.edge.http_port}
    # Two spare picks, in case the kernel hands out a configured edge port.
    picked = free_ports(8 + replicas + emulators + 2)
    if not use_free_edge_ports:
        picked = [p for p in picked if p not in configured]
    https, http, redis, redis_cache, balancer, status, exporter, prometheus = picked[:8]
    rest = picked[8:]
    if not use_free_edge_ports:
        https, http = config.edge.https_port, config.edge.http_port
    return PortAssignment(
        https=https,
        http=http,
        redis=redis,
        redis_cache=redis_cache,
        balancer=balancer,
        status=status,
        gateways=tuple(rest[:replicas]),
        emulators=tuple(rest[replicas : replicas + emulators]),
        nginx_exporter=exporter,
        prometheus=prometheus,
    )
