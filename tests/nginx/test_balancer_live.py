"""The Ollama balancer, live: the real nginx in front of Ollama emulators.

Which instance served a request is read from the emulators' own counters, never from
nginx, so these tests see what nginx actually did.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.nginx.stacks import small_stack
from tests.support.emulator import Emulator, EmulatorFactory
from tests.support.nginx_server import NginxFactory, NginxServer, TlsFiles

GENERATE = "POST /api/generate"
MODEL = "llama3.2:1b"


def _generate(base_url: str, **request: Any) -> httpx.Response:
    body = {"model": MODEL, "prompt": "hello", "stream": False, **request}
    return httpx.post(f"{base_url}/api/generate", json=body, timeout=30)


def _stream_arrivals(client: httpx.Client, url: str) -> tuple[list[float], list[dict[str, Any]]]:
    """Seconds from the request to each NDJSON line, and the lines."""
    arrivals: list[float] = []
    chunks: list[dict[str, Any]] = []
    start = time.monotonic()
    body = {"model": MODEL, "prompt": "tell me a story", "stream": True}
    with client.stream("POST", url, json=body) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("application/x-ndjson")
        for line in reply.iter_lines():
            if line:
                arrivals.append(time.monotonic() - start)
                chunks.append(json.loads(line))
    return arrivals, chunks


def _assert_streamed(arrivals: list[float], chunks: list[dict[str, Any]], delay: float) -> None:
    assert chunks[-1]["done"] is True
    assert not any(chunk["done"] for chunk in chunks[:-1])
    tokens = len(chunks) - 1
    assert tokens >= 4
    # Buffered anywhere on the way, every line would arrive at once at the end.
    assert arrivals[-1] - arrivals[0] >= 0.7 * (tokens - 1) * delay
    assert arrivals[0] < arrivals[-1] / 2


def test_a_stream_passes_the_balancer_token_by_token(
    nginx_factory: NginxFactory, emulator_factory: EmulatorFactory
) -> None:
    delay = 0.2
    ollama = emulator_factory(tokens=6, token_delay=delay)
    server = nginx_factory(small_stack(), ["127.0.0.1:9"], [f"127.0.0.1:{ollama.port}"])
    with httpx.Client(timeout=30) as client:
        arrivals, chunks = _stream_arrivals(client, f"{server.balancer_url}/api/generate")
    _assert_streamed(arrivals, chunks, delay)
    assert ollama.count(GENERATE) == 1


def test_a_stream_passes_the_edge_and_the_balancer_token_by_token(
    tmp_path: Path, tls_files: TlsFiles, emulator_factory: EmulatorFactory
) -> None:
    """Edge -> balancer -> Ollama: both hops of the real path, unbuffered."""
    delay = 0.2
    ollama = emulator_factory(tokens=6, token_delay=delay)
    server = NginxServer(
        tmp_path / "nginx", small_stack(), tls_files, ["127.0.0.1:9"], [f"127.0.0.1:{ollama.port}"]
    )
    # The edge's upstream is the balancer itself, where the gateway would sit.
    server.topology = replace(server.topology, gateways=[f"127.0.0.1:{server.balancer_port}"])
    server.start()
    try:
        with server.client(timeout=30) as client:
            arrivals, chunks = _stream_arrivals(client, "/api/generate")
        _assert_streamed(arrivals, chunks, delay)
        assert ollama.count(GENERATE) == 1
        with server.client() as client:
            assert client.get("/_emulator/stats").status_code == 404
    finally:
        server.stop()


def _pool(nginx_factory: NginxFactory, emulators: list[Emulator], **balancer: Any) -> NginxServer:
    addresses = [f"127.0.0.1:{e.port}" for e in emulators]
    return nginx_factory(small_stack(balancer=balancer), ["127.0.0.1:9"], addresses)


def test_least_conn_sends_new_requests_to_the_idle_instance(
    nginx_factory: NginxFactory, emulator_factory: EmulatorFactory
) -> None:
    # Long enough (50 s) never to end by itself: the test closes it when done.
    first, second = (emulator_factory(tokens=1000, token_delay=0.05) for _ in range(2))
    server = _pool(nginx_factory, [first, second])
    body = {"model": MODEL, "prompt": "a long story", "stream": True}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{server.balancer_url}/api/generate", json=body) as long_one,
    ):
        assert long_one.status_code == 200
        lines = long_one.iter_lines()
        assert json.loads(next(lines))["done"] is False
        busy = first if first.count(GENERATE) == 1 else second
        idle = second if busy is first else first
        assert (busy.count(GENERATE), idle.count(GENERATE)) == (1, 0)

        # While `busy` streams, every new request finds `idle` with fewer connections
        # (round robin would alternate).
        for _ in range(4):
            reply = _generate(server.balancer_url, options={"num_predict": 1})
            assert reply.status_code == 200
            assert reply.json()["done"] is True
        assert idle.count(GENERATE) == 4
        assert busy.count(GENERATE) == 1
        assert busy.stats()["active"] == 1
        assert json.loads(next(lines))["done"] is False


def test_without_load_requests_spread_over_every_instance(
    nginx_factory: NginxFactory, emulator_factory: EmulatorFactory
) -> None:
    emulators = [emulator_factory(tokens=2) for _ in range(3)]
    server = _pool(nginx_factory, emulators)
    for _ in range(9):
        assert _generate(server.balancer_url).status_code == 200
    counts = [e.count(GENERATE) for e in emulators]
    assert sum(counts) == 9
    assert all(count >= 1 for count in counts), counts


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_requests_keep_succeeding_when_an_instance_goes_away(
    nginx_factory: NginxFactory, emulator_factory: EmulatorFactory, how: str
) -> None:
    survivor, doomed = emulator_factory(tokens=3), emulator_factory(tokens=3)
    server = _pool(nginx_factory, [survivor, doomed])
    for _ in range(4):
        assert _generate(server.balancer_url).status_code == 200
    assert doomed.count(GENERATE) >= 1
    served_before = survivor.count(GENERATE)

    doomed.kill() if how == "kill" else doomed.stop()
    statuses = [
        _generate(server.balancer_url, stream=index % 2 == 0).status_code for index in range(30)
    ]
    assert statuses == [200] * 30
    assert survivor.count(GENERATE) == served_before + 30
    # Passive detection: after max_fails failures the dead instance is left alone.
    errors = server.error_log().count("connect() failed")
    assert 1 <= errors <= 2 * small_stack().balancer.max_fails, server.error_log()


def test_through_the_edge_a_lost_instance_costs_no_request(
    tmp_path: Path, tls_files: TlsFiles, emulator_factory: EmulatorFactory
) -> None:
    """The whole path, edge -> balancer -> Ollama, across an instance stopping midway."""
    survivor, doomed = emulator_factory(tokens=3), emulator_factory(tokens=3)
    server = NginxServer(
        tmp_path / "nginx",
        small_stack(edge={"rateLimitPerSecond": 1000, "rateLimitBurst": 1000}),
        tls_files,
        ["127.0.0.1:9"],
        [f"127.0.0.1:{survivor.port}", f"127.0.0.1:{doomed.port}"],
    )
    server.topology = replace(server.topology, gateways=[f"127.0.0.1:{server.balancer_port}"])
    server.start()
    try:
        body = {"model": MODEL, "prompt": "hi", "stream": False}
        statuses, served_by_doomed = [], 0
        with server.client() as client:
            for index in range(40):
                if index == 10:
                    served_by_doomed = doomed.count(GENERATE)
                    doomed.stop()
                statuses.append(client.post("/api/generate", json=body).status_code)
        assert statuses == [200] * 40
        assert served_by_doomed >= 1
        assert survivor.count(GENERATE) + served_by_doomed == 40
    finally:
        server.stop()
