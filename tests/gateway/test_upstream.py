"""The upstream client on its own, against a scripted server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from llm_gateway.settings import Settings
from llm_gateway.upstream import Upstream, UpstreamFailure
from pydantic import ValidationError

from tests.support.ports import free_port


@pytest.fixture
async def recording_server() -> AsyncIterator[tuple[str, list[bytes]]]:
    """Answers every request with a cookie and notes each request's head."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")),
                    0,
                )  # fmt: skip
                await reader.readexactly(length)
                heads.append(head)
                body = b'{"ok": true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"set-cookie: session=client-%d\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(heads), len(body), body)
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield f"http://localhost:{port}", heads
    finally:
        server.close()


async def test_only_the_forwarded_headers_reach_ollama_and_no_cookie_ever(
    recording_server: tuple[str, list[bytes]],
) -> None:
    """One pooled client serves every client: no keys upstream, no state between clients."""
    url, heads = recording_server
    upstream = Upstream(Settings(upstream_url=url))
    await upstream.start()
    client_headers = {
        "authorization": "Bearer llmsk-secret",
        "x-api-key": "llmsk-secret",
        "cookie": "session=client-1",
        "content-type": "application/json",
        "x-request-id": "abc-123",
    }
    try:
        for _ in range(3):
            response = await upstream.open("POST", "/api/generate", b"{}", client_headers)
            assert response.content_type == "application/json"
            assert await response.read() == b'{"ok": true}'
            await response.aclose()
    finally:
        await upstream.aclose()
    port = url.rsplit(":", 1)[1]
    assert (
        heads
        == [
            b"POST /api/generate HTTP/1.1\r\nhost: localhost:%s\r\ncontent-type: application/json"
            b"\r\nx-request-id: abc-123\r\ncontent-length: 2\r\n\r\n" % port.encode()
        ]
        * 3
    )


async def test_a_path_that_cannot_be_forwarded_is_refused(
    recording_server: tuple[str, list[bytes]],
) -> None:
    url, heads = recording_server
    upstream = Upstream(Settings(upstream_url=url))
    await upstream.start()
    try:
        with pytest.raises(UpstreamFailure) as failure:
            await upstream.open("GET", "/api/tags x", None, {})
        assert failure.value.status == 400
    finally:
        await upstream.aclose()
    assert heads == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [("ftp://ollama:11434", "http:// or https://"), ("http://", "no host"),
     ("http://ollama:99999", "[Pp]ort")],
)  # fmt: skip
def test_an_upstream_url_the_client_cannot_use_is_refused_at_start(url: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(upstream_url=url)
