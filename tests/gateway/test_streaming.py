"""Streams are relayed chunk by chunk, and a client that leaves cancels the upstream."""

from __future__ import annotations

import socket
import time

import httpx
import orjson

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayProcess

GREEDY = {"temperature": 0}


def raw_generate(body: bytes) -> bytes:
    """A POST /api/generate for a raw socket, which can leave without closing politely."""
    head = b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    return head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def wait_for_a_cancelled_upstream_call(emulator: Emulator, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while emulator.stats()["cancelled"] < 1:
        assert time.monotonic() < deadline, f"upstream not cancelled: {emulator.stats()}"
        time.sleep(0.05)


def test_first_token_arrives_while_the_upstream_is_still_generating(
    client: httpx.Client, emulator: Emulator
) -> None:
    emulator.configure(tokens=10, token_delay=0.15)
    body = {"model": "llama3.2", "prompt": "slowly", "options": GREEDY}
    arrivals = []
    started = time.perf_counter()
    with client.stream("POST", "/api/generate", json=body) as response:
        assert response.headers["x-cache"] == "MISS"
        for line in response.iter_lines():
            if line:
                arrivals.append((time.perf_counter() - started, orjson.loads(line)))
    first, last = arrivals[0][0], arrivals[-1][0]
    assert arrivals[-1][1]["done"] is True
    assert len(arrivals) == 11
    # Generation takes 10 x 0.15 s; buffering would deliver everything at the end.
    assert last > 1.2
    assert first < last - 0.9, f"first chunk at {first:.2f}s, last at {last:.2f}s"


def test_client_disconnect_cancels_the_upstream_and_stores_nothing(
    gateway: GatewayProcess, client: httpx.Client, emulator: Emulator
) -> None:
    emulator.configure(tokens=40, token_delay=0.1)
    body = orjson.dumps({"model": "llama3.2", "prompt": "abandon me", "options": GREEDY})
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(raw_generate(body))
        assert b"200 OK" in sock.recv(4096)  # headers and the first chunk(s)
    wait_for_a_cancelled_upstream_call(emulator, 5)
    emulator.configure(tokens=4, token_delay=0)
    again = client.post("/api/generate", json={"model": "llama3.2", "prompt": "abandon me",
                                                "options": GREEDY})  # fmt: skip
    assert again.headers["x-cache"] == "MISS"


def test_disconnect_while_waiting_for_the_first_token_cancels_too(
    gateway: GatewayProcess, emulator: Emulator
) -> None:
    emulator.configure(first_token_delay=5)
    body = orjson.dumps({"model": "llama3.2", "prompt": "slow start", "stream": False})
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(raw_generate(body))
        time.sleep(0.3)
    wait_for_a_cancelled_upstream_call(emulator, 4)


def test_a_client_leaving_at_once_still_cancels_the_upstream(
    gateway: GatewayProcess, emulator: Emulator
) -> None:
    """The disconnect watcher starts only after a few ms (fast answers never need one);
    a client gone before that is still seen when it starts."""
    emulator.configure(first_token_delay=5)
    body = orjson.dumps({"model": "llama3.2", "prompt": "gone at once", "stream": False})
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(raw_generate(body))
    wait_for_a_cancelled_upstream_call(emulator, 4)
