"""bench/rollout: its stack file, how a request is classified, and how damage is counted.

The whole run (`make bench-rollout`) starts the local stack and takes minutes; these
check its parts without starting anything.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from llm_gateway.contract import digest_of
from llm_stack.local.source import load_source

from bench.rollout.load import Load, Sample
from bench.rollout.operations import Operation
from bench.rollout.plot import per_second, plot
from bench.rollout.report import damage, markdown, p95, results
from bench.rollout.stack import MODEL, LocalStack, stack_file


def test_the_stack_file_is_a_valid_local_stack(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.rollout.yaml"
    path.write_text(yaml.safe_dump(stack_file("llmsk-load", "llmsk-admin")))
    source = load_source(path)
    config = source.config
    assert config.ollama.instances >= 2
    assert config.gateway.replicas >= 2
    assert config.gateway.routing == "model-aware"
    assert config.ollama.models == [MODEL]
    assert source.api_keys["ops"]["admin"] is True
    assert source.api_keys["ops"]["digest"] == digest_of("llmsk-admin")
    assert source.api_keys["load"].get("admin") is None


def test_the_reload_command_is_the_running_edges() -> None:
    stack = LocalStack(Path("/tmp/rollout-x"))
    argv = stack.reload_argv("/usr/sbin/nginx")
    assert argv[0] == "/usr/sbin/nginx"
    assert argv[-2:] == ["-s", "reload"]
    assert argv[argv.index("-c") + 1] == str(stack.layout.nginx_conf)
    assert argv[argv.index("-p") + 1] == str(stack.layout.nginx)


def _lines(*chunks: dict[str, object]) -> bytes:
    return b"".join(orjson.dumps(c) + b"\n" for c in chunks)


class _CutStream(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield _lines({"response": "a", "done": False})
        raise httpx.ReadError("connection reset")


def _handler(request: httpx.Request) -> httpx.Response:
    kind = orjson.loads(request.content)["prompt"].split()[-1]
    if kind == "0":  # complete
        return httpx.Response(200, content=_lines({"done": False}, {"done": True}))
    if kind == "1":  # closed early, cleanly
        return httpx.Response(200, content=_lines({"done": False}))
    if kind == "2":  # reset mid-stream
        return httpx.Response(200, stream=_CutStream())
    return httpx.Response(502, json={"error": "upstream unavailable"})


@pytest.mark.parametrize(
    ("n", "outcome", "status"),
    [(0, "ok", 200), (1, "cut", 200), (2, "cut", 200), (3, "failed", 502)],
)
async def test_each_request_is_classified(n: int, outcome: str, status: int) -> None:
    load = Load("https://edge", "llmsk-x", MODEL, ssl.create_default_context(), clients=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(_handler)) as http:
        sample = await load._one(http, 0, n)
    assert (sample.outcome, sample.status) == (outcome, status)
    assert (sample.first_token is not None) == (outcome != "failed")


async def test_a_refused_connection_is_a_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    load = Load("https://edge", "llmsk-x", MODEL, ssl.create_default_context(), clients=1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        sample = await load._one(http, 0, 0)
    assert (sample.outcome, sample.status, sample.error) == ("failed", None, "ConnectError")


def _s(started: float, ended: float, outcome: str = "ok", status: int | None = 200) -> Sample:
    first = None if outcome == "failed" else started + 0.1
    return Sample(0, started, first, ended, status, outcome)


SAMPLES = [
    _s(0.0, 2.0),
    _s(1.0, 3.0),
    _s(2.5, 4.0, "cut"),  # cut during the operation
    _s(4.5, 4.6, "failed", 502),  # just after it, within the tail
    _s(3.0, 7.0),  # ended long after: not counted
]


def test_damage_counts_what_ended_during_the_operation() -> None:
    row = damage(SAMPLES, "replace gateway replica", "gateway-0", "naive", 2.0, 4.0)
    assert (row.requests, row.failed, row.cut, row.status_5xx) == (4, 1, 1, 1)
    assert row.seconds == 2.0
    # Started during it: 2.5 and 3.0, both with a first token 0.1 s later.
    assert row.ttft_p95 == pytest.approx(0.1)


def test_p95() -> None:
    assert p95([]) is None
    assert p95([float(i) for i in range(1, 101)]) == 95.0
    assert p95([3.0]) == 3.0


def test_results_and_markdown_total_planned_and_naive_apart() -> None:
    ops = [
        Operation("replace gateway replica", "gateway-0", "planned", 0.0, 1.0),
        Operation("replace gateway replica", "gateway-0", "naive", 2.0, 4.0),
    ]
    setup = {"instances": 2, "gateways": 2, "clients": 1, "stream_seconds": 2.0}
    data = results(SAMPLES, ops, (0.0, 1.0), setup)
    assert data["totals"]["planned"] == {"failed": 0, "cut": 0, "status_5xx": 0}
    assert data["totals"]["naive"] == {"failed": 1, "cut": 1, "status_5xx": 1}
    text = markdown(data)
    assert "| replace gateway replica | gateway-0 | naive | 2.0 | 4 | 1 | 1 | 1 | 100 |" in text


def test_per_second_counts_what_ended_in_each_second() -> None:
    assert per_second(SAMPLES, "ok") == [0, 0, 1, 1, 0, 0, 0, 1]
    assert per_second(SAMPLES, "cut") == [0, 0, 0, 0, 1, 0, 0, 0]
    assert per_second(SAMPLES, "failed") == [0, 0, 0, 0, 1, 0, 0, 0]
    assert per_second([], "ok") == []


def test_the_plot_is_written(tmp_path: Path) -> None:
    ops = [Operation("replace gateway replica", "gateway-0", "naive", 2.0, 4.0)]
    plot(SAMPLES, ops, tmp_path / "load.png")
    assert (tmp_path / "load.png").read_bytes().startswith(b"\x89PNG")
