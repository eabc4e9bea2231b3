"""The pool's one override of aiohttp (`http_pool.py`): a kept connection the peer wrote
to while idle is never reused, and the override still fits the class it extends."""

from __future__ import annotations

import asyncio
import inspect

import aiohttp
import pytest
from llm_gateway.http_pool import StrictReuseConnector
from llm_gateway.upstream import Timeouts, Upstream

from tests.support.scripted_http import answer, read_request, serve

STRAY = {
    "408 then nothing": (
        b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    ),
    "a whole response": answer(b"not yours"),
    "junk": b"garbage\r\n\r\n",
}


def test_the_overridden_method_still_has_the_shape_it_was_written_for() -> None:
    """`_get` is private: when aiohttp changes it, this fails before a user does."""
    original = inspect.signature(aiohttp.TCPConnector._get)
    assert list(original.parameters) == ["self", "key", "traces"]
    assert inspect.iscoroutinefunction(aiohttp.TCPConnector._get)
    ours = inspect.signature(StrictReuseConnector._get)
    assert list(ours.parameters) == list(original.parameters)
    # What the override reads of what `_get` returns.
    assert isinstance(inspect.getattr_static(aiohttp.connector.Connection, "protocol"), property)
    assert isinstance(
        inspect.getattr_static(aiohttp.client_proto.ResponseHandler, "should_close"), property
    )


@pytest.mark.parametrize("stray", sorted(STRAY))
async def test_bytes_written_on_an_idle_kept_connection_never_answer_the_next_request(
    stray: str,
) -> None:
    """The server answers, then writes `stray` on the idle connection and keeps it open:
    the next request goes on a new connection and gets its own answer."""
    served = 0

    async def poisons_idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        while True:
            _, body = await read_request(reader)
            served += 1
            writer.write(answer(body))
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(STRAY[stray])
            await writer.drain()

    async with serve(poisons_idle) as server:
        upstream = Upstream(f"http://127.0.0.1:{server.port}", Timeouts(2, 5, 5, 10), 4)
        await upstream.start()
        try:
            for n in (b"first", b"second", b"third"):
                async with upstream.request("POST", "/api/generate", n, {}) as response:
                    assert (response.status, await response.read()) == (200, n)
                await asyncio.sleep(0.2)  # the stray bytes arrive while it is idle
        finally:
            await upstream.aclose()
    assert served == 3
    assert server.connections == 3
