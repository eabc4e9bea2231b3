"""How to tell that a started service is ready: its ports accept, and its HTTP check passes.

A check is plain data (built by the plan) with one `passed()` method that makes one
short attempt; the supervisor polls it against a deadline.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

ATTEMPT_TIMEOUT_SECONDS = 1.0


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=ATTEMPT_TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class ReadyCheck:
    """Ready when every port accepts and, if given, each URL answers 200."""

    ports: Sequence[int]
    urls: Sequence[str] = ()
    # Redis: AUTH + PING on the first port must answer PONG.
    redis_password: str | None = None

    def passed(self) -> bool:
        if not all(port_accepts(port) for port in self.ports):
            return False
        if self.redis_password is not None and not redis_pong(self.ports[0], self.redis_password):
            return False
        return all(http_ok(url) for url in self.urls)

    def describe(self) -> str:
        parts = [f"port {p}" for p in self.ports] + [f"GET {u}" for u in self.urls]
        if self.redis_password is not None:
            parts.append("AUTH + PING")
        return ", ".join(parts)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=ATTEMPT_TIMEOUT_SECONDS) as response:  # noqa: S310
            return int(response.status) == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _resp_command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def redis_pong(port: int, password: str, host: str = "127.0.0.1") -> bool:
    """AUTH then PING over RESP: proves the server loaded its config and takes commands."""
    try:
        with socket.create_connection((host, port), timeout=ATTEMPT_TIMEOUT_SECONDS) as sock:
            sock.sendall(_resp_command("AUTH", password) + _resp_command("PING"))
            reply = b""
            while b"PONG" not in reply and len(reply) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
                if reply.startswith(b"-"):
                    return False
            return reply.startswith(b"+OK\r\n") and b"+PONG\r\n" in reply
    except OSError:
        return False
