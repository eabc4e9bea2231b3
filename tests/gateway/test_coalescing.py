"""Identical concurrent requests make one upstream call (singleflight)."""

from __future__ import annotations

import asyncio
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
    # No stopwatch: followers join once the leader holds two chunks, and what the leader
    # had received when each follower's first line came says "at once, then live".
    emulator.configure(tokens=8, token_delay=0.5)
    leader_lines: list[bytes] = []

    async def lead(http: httpx.AsyncClient, two_in: asyncio.Event) -> str:
        async with http.stream("POST", "/api/generate", json=BODY) as response:
            async for line in response.aiter_lines():
                if line:
                    leader_lines.append(line.encode())
                    if len(leader_lines) == 2:
                        two_in.set()
            return response.headers["x-cache"]

    async def follow(
        http: httpx.AsyncClient, two_in: asyncio.Event
    ) -> tuple[str, list[bytes], int]:
        await two_in.wait()
        lines: list[bytes] = []
        leader_had = -1
        async with http.stream("POST", "/api/generate", json=BODY) as response:
            async for line in response.aiter_lines():
                if line:
                    if not lines:
                        leader_had = len(leader_lines)
                    lines.append(line.encode())
            return response.headers["x-cache"], lines, leader_had

    async def run() -> tuple[str, list[tuple[str, list[bytes], int]]]:
        two_in = asyncio.Event()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
            leader, *followers = await asyncio.gather(
                lead(http, two_in), follow(http, two_in), follow(http, two_in)
            )
        return leader, followers

    leader, followers = asyncio.run(run())
    assert leader == "MISS"
    assert emulator.count("POST /api/generate") == 1
    assert len(leader_lines) == 9  # eight tokens and the final chunk
    assert followers
    for verdict, lines, leader_had in followers:
        assert verdict == "COALESCED"
        # Joined half-way: the whole stream, what was produced before they came included...
        assert lines == leader_lines
        # ...and they came while it was still going: the rest reached them live.
        assert 2 <= leader_had < len(leader_lines)


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
