"""Identical concurrent requests make one upstream call (singleflight)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import orjson

from tests.support.emulator import Emulator
from tests.support.gateway import GatewayProcess

BODY = {"model": "llama3.2", "prompt": "everyone asks this", "options": {"temperature": 0}}


def test_fifty_identical_requests_make_one_upstream_call(
    gateway: GatewayProcess, emulator: Emulator
) -> None:
    emulator.configure(first_token_delay=0.5)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, limits=limits) as http:
            return await asyncio.gather(
                *(
                    http.post("/api/generate", json={**BODY, "stream": i % 2 == 0})
                    for i in range(50)
                )
            )

    responses = asyncio.run(burst())
    assert emulator.count("POST /api/generate") == 1
    assert all(r.status_code == 200 for r in responses)
    verdicts = Counter(r.headers["x-cache"] for r in responses)
    assert verdicts["MISS"] == 1
    assert verdicts["MISS"] + verdicts["COALESCED"] + verdicts["HIT"] == 50
    assert verdicts["COALESCED"] >= 40
    texts = set()
    for response in responses:
        if response.headers["content-type"] == "application/x-ndjson":
            chunks = [orjson.loads(line) for line in response.content.splitlines()]
            texts.add("".join(c["response"] for c in chunks))
            assert chunks[-1]["done"] is True
        else:
            texts.add(response.json()["response"])
    assert len(texts) == 1


def test_streaming_followers_receive_the_stream_live(
    gateway: GatewayProcess, emulator: Emulator
) -> None:
    emulator.configure(tokens=8, token_delay=0.2)

    async def follow(http: httpx.AsyncClient, delay: float) -> tuple[str, float, float]:
        await asyncio.sleep(delay)
        started = time.perf_counter()
        first = 0.0
        async with http.stream("POST", "/api/generate", json=BODY) as response:
            verdict = response.headers["x-cache"]
            async for line in response.aiter_lines():
                if line and not first:
                    first = time.perf_counter() - started
        return verdict, first, time.perf_counter() - started

    async def run() -> list[tuple[str, float, float]]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            return await asyncio.gather(follow(http, 0), follow(http, 0.5), follow(http, 0.5))

    leader, *followers = asyncio.run(run())
    assert leader[0] == "MISS"
    assert emulator.count("POST /api/generate") == 1
    for verdict, first, total in followers:
        assert verdict == "COALESCED"
        # Joined half-way: they get what was produced so far at once, then the rest live.
        assert first < 0.3
        assert total > 0.8


def test_a_follower_leaving_does_not_cancel_the_others(
    gateway: GatewayProcess, emulator: Emulator
) -> None:
    emulator.configure(tokens=6, token_delay=0.15)

    async def quitter(http: httpx.AsyncClient) -> str:
        await asyncio.sleep(0.2)  # joins the stayer's flight, takes one chunk, leaves
        async with http.stream("POST", "/api/generate", json=BODY) as response:
            async for _ in response.aiter_lines():
                break
            return response.headers["x-cache"]

    async def stayer(http: httpx.AsyncClient) -> bytes:
        response = await http.post("/api/generate", json=BODY)
        return response.content

    async def run() -> tuple[str, bytes]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            return await asyncio.gather(quitter(http), stayer(http))

    verdict, content = asyncio.run(run())
    assert verdict == "COALESCED"
    assert orjson.loads(content.splitlines()[-1])["done"] is True
    assert emulator.count("POST /api/generate") == 1
    assert emulator.stats()["cancelled"] == 0
