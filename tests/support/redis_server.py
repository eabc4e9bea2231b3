"""A real redis-server on a free loopback port (no fake Redis anywhere).

Plain by default; `RedisServer(workdir, password=..., user=(name, password), tls=...)`
starts one that wants a password (`requirepass`), an ACL user (the default user then
off), or TLS only (no plain port; certificates from a test CA, see `RedisTls`).
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import trustme

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess


@dataclass(frozen=True, slots=True)
class RedisTls:
    """PEM files for a TLS redis-server: a test CA and a certificate it signed for 127.0.0.1."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def issue(cls, workdir: Path, ca: trustme.CA | None = None) -> RedisTls:
        ca = ca or trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        files = cls(workdir / "redis-ca.pem", workdir / "redis-cert.pem", workdir / "redis-key.pem")
        ca.cert_pem.write_to_path(str(files.ca_file))
        leaf.cert_chain_pems[0].write_to_path(str(files.cert_file))
        leaf.private_key_pem.write_to_path(str(files.key_file))
        return files


class RedisServer:
    """One redis-server process that tests may stop and start again on the same port."""

    def __init__(
        self,
        workdir: Path,
        *,
        password: str | None = None,
        user: tuple[str, str] | None = None,
        tls: RedisTls | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.password = password
        self.user = user
        self.tls = tls
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """The URL with the credentials this server accepts."""
        if self.user is not None:
            return self.url_as(*self.user)
        return self.url_as(None, self.password)

    def url_as(self, username: str | None, password: str | None) -> str:
        """The URL with the given credentials (right or wrong)."""
        scheme = "rediss" if self.tls is not None else "redis"
        credentials = ""
        if password is not None:
            credentials = f"{quote(username or '', safe='')}:{quote(password, safe='')}@"
        return f"{scheme}://{credentials}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A redis-py client with the right credentials (for a test to look inside)."""
        if self.tls is None:
            return redis.Redis.from_url(self.url)
        return redis.Redis.from_url(self.url, ssl_ca_certs=str(self.tls.ca_file))

    def argv(self) -> list[str]:
        argv = [
            self.binary,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--protected-mode", "yes",
        ]  # fmt: skip
        if self.tls is None:
            argv += ["--port", str(self.port)]
        else:
            argv += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert_file),
                "--tls-key-file", str(self.tls.key_file),
                "--tls-ca-cert-file", str(self.tls.ca_file),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        if self.password is not None:
            argv += ["--requirepass", self.password]
        if self.user is not None:
            name, password = self.user
            argv += ["--user", name, "on", f">{password}", "~*", "+@all"]
            argv += ["--user", "default", "off"]
        return argv

    def start(self) -> RedisServer:
        log = self.workdir / f"redis-{self.port}.log"
        self._proc = ManagedProcess(self.argv(), self.port, log).start()
        return self

    def kill(self) -> None:
        """SIGKILL: gone at once, connections reset, nothing saved."""
        if self._proc is not None:
            self.resume()
            self._proc.kill()
            self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            self.resume()  # a frozen server cannot act on SIGTERM
            self._proc.stop()
            self._proc = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        if self._proc is not None:
            self._proc.signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the session; tests that stop it must start it again."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test alone (for tests that stop and restart it)."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
