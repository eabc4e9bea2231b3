"""The upstream client on its own, against a scripted server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from llm_gateway.settings import Settings
from llm_gateway.upstream import Upstream, UpstreamFailure
from pydantic import ValidationError

from tests.support.scripted_http import read_request, serve


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[Upstream, int, list[bytes]]]:
    """An Upstream to a server that answers every request with a cookie and notes each
    request's head; the server's port."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            heads.append(head)
            body = b'{"ok": true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"set-cookie: session=client-%d\r\ncontent-length: %d\r\n\r\n%s"
                % (len(heads), len(body), body)
            )

    async with serve(handle) as server:
        upstream = Upstream(Settings(upstream_url=f"http://localhost:{server.port}"))
        await upstream.start()
        try:
            yield upstream, server.port, heads
        finally:
            await upstream.aclose()


async def test_only_the_forwarded_headers_reach_ollama_and_no_cookie_ever(
    recorded: tuple[Upstream, int, list[bytes]],
) -> None:
    """One pooled client serves every client: no keys upstream, no state between clients."""
    upstream, port, heads = recorded
    client_headers = {
        "authorization": "Bearer llmsk-secret",
        "x-api-key": "llmsk-secret",
        "cookie": "session=client-1",
        "content-type": "application/json",
        "x-request-id": "abc-123",
    }
    for _ in range(3):
        response = await upstream.open("POST", "/api/generate", b"{}", client_headers)
        assert response.content_type == "application/json"
        assert await response.read() == b'{"ok": true}'
        await response.aclose()
    assert (
        heads
        == [
            b"POST /api/generate HTTP/1.1\r\nhost: localhost:%d\r\ncontent-type: application/json"
            b"\r\nx-request-id: abc-123\r\ncontent-length: 2\r\n\r\n" % port
        ]
        * 3
    )


async def test_a_path_that_cannot_be_forwarded_is_refused(
    recorded: tuple[Upstream, int, list[bytes]],
) -> None:
    upstream, _, heads = recorded
    with pytest.raises(UpstreamFailure) as failure:
        await upstream.open("GET", "/api/tags x", None, {})
    assert failure.value.status == 400
    assert heads == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [("ftp://ollama:11434", "http:// or https://"), ("http://", "no host"),
     ("http://ollama:99999", "[Pp]ort")],
)  # fmt: skip
def test_an_upstream_url_the_client_cannot_use_is_refused_at_start(url: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(upstream_url=url)
