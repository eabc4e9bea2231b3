"""Knobs (tokens, delays) and cancellation: what a gateway's streaming tests rely on."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tests.emulator.framing import ndjson, wait_until
from tests.support.emulator import Emulator

GEN = {"model": "llama3.2", "prompt": "x"}
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}


def test_tokens_knob_and_reset(emulator: Emulator, http: httpx.Client) -> None:
    assert emulator.configure(tokens=3)["tokens"] == 3
    assert len(ndjson(http.post("/api/generate", json=GEN).content)) == 4
    emulator.reset()
    final = ndjson(http.post("/api/generate", json=GEN).content)[-1]
    assert final["eval_count"] == 8


def test_bad_knobs_are_refused(emulator: Emulator) -> None:
    for bad in ({"tokens": -1}, {"tokens": 1.5}, {"token_delay": "slow"}, {"speed": 1}):
        with pytest.raises(RuntimeError, match="400"):
            emulator.configure(**bad)


def test_first_token_delay_is_time_to_first_byte(emulator: Emulator, http: httpx.Client) -> None:
    emulator.configure(first_token_delay=0.3)
    started = time.monotonic()
    with http.stream("POST", "/api/generate", json=GEN) as response:
        headers_at = time.monotonic() - started
        body = response.read()
    assert headers_at >= 0.3  # never early (uvloop's own timers can be, by up to 1 ms)
    assert len(ndjson(body)) == 9
    final = ndjson(body)[-1]
    assert final["prompt_eval_duration"] >= 300_000_000
    # Non-streamed answers wait for the whole generation too.
    started = time.monotonic()
    http.post("/api/generate", json={**GEN, "stream": False})
    assert time.monotonic() - started >= 0.3


def test_chunks_are_delivered_one_by_one(emulator: Emulator, http: httpx.Client) -> None:
    emulator.configure(tokens=4, token_delay=0.15)
    arrivals = []
    started = time.monotonic()
    with http.stream("POST", "/api/chat", json=CHAT) as response:
        for line in response.iter_lines():
            arrivals.append((time.monotonic() - started, orjson.loads(line)))
    assert len(arrivals) == 5
    first_at, last_at = arrivals[0][0], arrivals[-1][0]
    # Three gaps of 0.15 s: the first token arrives long before the stream ends.
    assert last_at - first_at >= 0.4
    assert first_at < 0.3
    assert arrivals[-1][1]["eval_duration"] >= 400_000_000


def test_sse_chunks_are_delivered_one_by_one(emulator: Emulator, http: httpx.Client) -> None:
    emulator.configure(tokens=3, token_delay=0.15)
    arrivals = []
    started = time.monotonic()
    body = {**CHAT, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line:
                arrivals.append(time.monotonic() - started)
    assert arrivals[-1] - arrivals[0] >= 0.25


def test_disconnect_mid_stream_is_counted_as_cancelled(
    emulator: Emulator, http: httpx.Client
) -> None:
    emulator.configure(tokens=200, token_delay=0.02)
    with http.stream("POST", "/api/generate", json=GEN) as response:
        lines = response.iter_lines()
        next(lines)
        next(lines)
    # Leaving the block closes the connection before the stream is finished.
    wait_until(lambda: emulator.stats()["cancelled"] == 1)
    stats = emulator.stats()
    assert stats["active"] == 0
    assert stats["completed"] == 0


def test_disconnect_during_first_token_delay(emulator: Emulator, http: httpx.Client) -> None:
    emulator.configure(first_token_delay=30)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/api/chat", json=CHAT, timeout=0.3)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/api/embed", json={"model": "all-minilm", "input": "x"}, timeout=0.3)
    wait_until(lambda: emulator.stats()["cancelled"] == 2)
    assert emulator.stats()["active"] == 0


def test_finished_requests_are_not_cancelled(emulator: Emulator, http: httpx.Client) -> None:
    emulator.configure(token_delay=0.01)
    for _ in range(3):
        http.post("/api/generate", json=GEN)
    stats = emulator.stats()
    assert stats["completed"] == 3
    assert stats["cancelled"] == 0
    assert stats["active"] == 0


def test_counters(emulator: Emulator, http: httpx.Client) -> None:
    http.post("/api/chat", json=CHAT)
    http.post("/api/chat", json={**CHAT, "stream": False})
    http.get("/api/tags")
    http.get("/nowhere")
    emulator.configure(tokens=2)  # control requests are not counted
    assert emulator.count("POST /api/chat") == 2
    assert emulator.count("GET /api/tags") == 1
    assert emulator.count("GET /nowhere") == 1
    stats = emulator.stats()
    assert stats["total"] == 4
    assert stats["completed"] == 4
    assert not any(key.startswith("POST /_emulator") for key in stats["requests"])


def test_concurrent_requests_are_served_together(emulator: Emulator) -> None:
    """Delays are awaited, not slept: 20 slow requests take about one delay, not twenty."""
    import asyncio

    emulator.configure(first_token_delay=0.3)

    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=emulator.url, timeout=10) as client:
            replies = await asyncio.gather(
                *(client.post("/api/generate", json={**GEN, "stream": False}) for _ in range(20))
            )
        return [r.status_code for r in replies]

    started = time.monotonic()
    assert asyncio.run(run()) == [200] * 20
    assert time.monotonic() - started < 3.0


def test_digest_change_shows_in_tags(emulator: Emulator, http: httpx.Client) -> None:
    before = {m["name"]: m for m in http.get("/api/tags").json()["models"]}
    emulator.set_digest("llama3.2", "0f" * 32)
    models = http.get("/api/tags").json()["models"]
    after = {m["name"]: m for m in models}
    assert after["llama3.2:latest"]["digest"] == "0f" * 32
    assert after["llama3.2:latest"]["modified_at"] != before["llama3.2:latest"]["modified_at"]
    assert models[0]["name"] == "llama3.2:latest"  # most recently modified first
    assert after["llama3.2:1b"] == before["llama3.2:1b"]
    emulator.set_digest("qwen2.5:0.5b", "1a" * 32)
    assert (
        http.post("/api/generate", json={"model": "qwen2.5:0.5b", "prompt": "x"}).status_code == 200
    )
    with pytest.raises(RuntimeError, match="400"):
        emulator.set_digest("llama3.2", "sha256:" + "0f" * 32)
    emulator.reset()
    restored = {m["name"]: m["digest"] for m in http.get("/api/tags").json()["models"]}
    assert restored["llama3.2:latest"] == before["llama3.2:latest"]["digest"]
    assert "qwen2.5:0.5b" not in restored
