"""The upstream client on its own, against a small aiohttp server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from llm_gateway.settings import Settings
from llm_gateway.upstream import Upstream

from tests.support.ports import free_port


@pytest.fixture
async def cookie_server() -> AsyncIterator[tuple[str, list[str | None]]]:
    """Sets a cookie on every answer and notes the Cookie header of each request."""
    seen: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("session", f"client-{len(seen)}")
        return response

    app = web.Application()
    app.router.add_post("/api/generate", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        # A host name, not an IP: cookie jars ignore cookies from IP addresses.
        yield f"http://localhost:{port}", seen
    finally:
        await runner.cleanup()


async def test_cookies_from_one_answer_never_reach_another_request(
    cookie_server: tuple[str, list[str | None]],
) -> None:
    """One pooled session serves every client: it must not carry state between them."""
    url, seen = cookie_server
    upstream = Upstream(Settings(upstream_url=url))
    await upstream.start()
    try:
        for _ in range(3):
            response = await upstream.open("POST", "/api/generate", b"{}", {})
            assert await response.read() == b'{"ok": true}'
            await response.aclose()
    finally:
        await upstream.aclose()
    assert seen == [None, None, None]
