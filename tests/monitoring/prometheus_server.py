"""The real `prometheus` binary, running the rendered config on a free loopback port."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from llm_config.model import StackConfig
from llm_monitoring.prometheus import (
    CONFIG_FILE_NAME,
    ScrapeTargets,
    prometheus_args,
    prometheus_files,
)

from tests.monitoring.tools import binary
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess


class PrometheusServer:
    def __init__(
        self,
        workdir: Path,
        config: StackConfig,
        gateways: Sequence[str],
        nginx_exporter: str | None = None,
    ) -> None:
        self.port = free_port()
        self.config = config
        config_dir = workdir / "prometheus"
        config_dir.mkdir()
        self.targets = ScrapeTargets(
            gateways=list(gateways),
            nginx_exporter=nginx_exporter,
            gpu_exporters=[],
            prometheus=f"127.0.0.1:{self.port}",
        )
        for path, text in prometheus_files(config, self.targets, str(config_dir)).items():
            Path(path).write_text(text)
        argv = [
            binary("prometheus"),
            *prometheus_args(
                config,
                str(config_dir / CONFIG_FILE_NAME),
                str(workdir / "tsdb"),
                f"127.0.0.1:{self.port}",
            ),
        ]
        self.process = ManagedProcess(argv, self.port, workdir / "prometheus.log")
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        self.process.start()
        self.wait_for(lambda: httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200)
        return self

    def stop(self) -> None:
        self.process.stop()

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The value of a query that returns at most one series (None when empty)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll (bounded) until `ready()`; on timeout, fail with Prometheus's log."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not true after {timeout}s; prometheus log:\n{self.process.log_text()[-3000:]}"
                )
            time.sleep(0.2)

    def wait_for_value(self, expr: str, expected: float, timeout: float = 30.0) -> None:
        self.wait_for(lambda: self.value(expr) == expected, timeout)
