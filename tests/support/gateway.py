"""A real gateway process (`python -m llm_gateway`) on a free port, configured by env."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

# Tests run the gateway with fast refreshes so that digest changes show up quickly.
TEST_DEFAULTS = {
    "GATEWAY_AUTH_DISABLED": "true",
    "GATEWAY_MODEL_REFRESH_SECONDS": "0.5",
    "GATEWAY_REDIS_RETRY_AFTER_SECONDS": "0.2",
    "GATEWAY_LOG_LEVEL": "warning",
}


class GatewayProcess:
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.workdir = workdir
        full_env = {**TEST_DEFAULTS, **env, "GATEWAY_HOST": "127.0.0.1"}
        full_env["GATEWAY_PORT"] = str(self.port)
        self.env = full_env
        self.log_path = workdir / f"gateway-{self.port}.log"
        self._proc = ManagedProcess(
            [sys.executable, "-m", "llm_gateway"], self.port, self.log_path, env=full_env
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> ManagedProcess:
        return self._proc

    def start(self) -> GatewayProcess:
        self._proc.start()
        return self

    def stop(self) -> int | None:
        return self._proc.stop()

    def log_text(self) -> str:
        return self._proc.log_text()

    def access_log(self) -> list[dict[str, object]]:
        import orjson

        lines = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                lines.append(orjson.loads(line))
        return lines

    def wait_for_access_log(
        self, predicate: Callable[[list[dict[str, object]]], bool], timeout: float = 5.0
    ) -> list[dict[str, object]]:
        """The access log once `predicate` holds (lines are flushed every 0.2 s)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.access_log()
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"access log never matched; last lines: {lines[-3:]}")
            time.sleep(0.05)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start gateways with given `GATEWAY_*` env; all are stopped after the test."""
    started: list[GatewayProcess] = []

    def start(**env: str) -> GatewayProcess:
        gateway = GatewayProcess(tmp_path, {k.upper(): str(v) for k, v in env.items()}).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name != name:
                continue
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
