"""A real gateway process in front of the session's emulator and a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayProcess
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def _module_gateway(
    _session_emulator: Emulator, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        tmp_path_factory.mktemp("gateway"),
        {"GATEWAY_UPSTREAM_URL": _session_emulator.url, "GATEWAY_REDIS_URL": redis_server.url},
    ).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def gateway(
    _module_gateway: GatewayProcess, emulator: Emulator, redis_server: RedisServer
) -> GatewayProcess:
    """The module's gateway, with an empty cache and a freshly reset emulator behind it."""
    redis.Redis.from_url(redis_server.url).flushdb()
    return _module_gateway


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30.0) as http:
        yield http


@pytest.fixture
def direct(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, timeout=30.0) as http:
        yield http
