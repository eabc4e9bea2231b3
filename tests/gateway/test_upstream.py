"""The upstream client (aiohttp underneath) against scripted servers on loopback: what
reaches Ollama, connection reuse and the one retry, each time bound, and failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from llm_gateway.settings import Settings
from llm_gateway.upstream import Timeouts, Upstream, UpstreamFailure
from pydantic import ValidationError

from tests.support.ports import free_port
from tests.support.scripted_http import Handler, Server, answer, read_request, serve

GENEROUS = Timeouts(connect=2, first_byte=5, idle=5, total=10)


@asynccontextmanager
async def upstream_on(
    handler: Handler, timeouts: Timeouts = GENEROUS, limit: int = 16
) -> AsyncIterator[tuple[Server, Upstream]]:
    """A scripted server and the gateway's client to it, closed at the end."""
    async with serve(handler) as server:
        upstream = Upstream(f"http://127.0.0.1:{server.port}", timeouts, limit)
        await upstream.start()
        try:
            yield server, upstream
        finally:
            await upstream.aclose()


async def read_all(
    upstream: Upstream, method: str = "POST", body: bytes = b"{}"
) -> tuple[int, bytes]:
    async with upstream.request(method, "/api/generate", body or None, {}) as response:
        return response.status, await response.read()


def echo_forever() -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, body = await read_request(reader)
            writer.write(answer(body))

    return handler


async def test_only_the_forwarded_headers_reach_ollama_and_no_cookie_ever() -> None:
    """One pooled client serves every client: no keys upstream, no state between clients,
    no compression asked for (the bytes are relayed and cached as Ollama sends them)."""
    heads: list[bytes] = []

    async def cookies(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            heads.append(head)
            writer.write(answer(b'{"ok": true}', b"set-cookie: session=client-%d\r\n" % len(heads)))

    client_headers = {
        "authorization": "Bearer llmsk-secret",
        "x-api-key": "llmsk-secret",
        "cookie": "session=client-1",
        "content-type": "application/json",
        "x-request-id": "abc-123",
    }
    async with upstream_on(cookies) as (server, upstream):
        for _ in range(3):
            async with upstream.request("POST", "/api/generate", b"{}", client_headers) as r:
                assert await r.read() == b'{"ok": true}'
    assert len(heads) == 3
    assert server.connections == 1
    for head in heads:
        lines = head.decode().lower().split("\r\n")
        assert lines[0] == "post /api/generate http/1.1"
        names = {line.split(":")[0] for line in lines[1:] if line}
        assert names == {"host", "content-type", "x-request-id", "content-length"}, head
        assert "x-request-id: abc-123" in lines
        assert f"host: 127.0.0.1:{server.port}" in lines


async def test_the_path_and_query_are_passed_on_as_the_client_sent_them() -> None:
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        heads.append(head)
        writer.write(answer(b"{}"))

    async with (
        upstream_on(record) as (_server, upstream),
        upstream.request("GET", "/v1/models/a%2Fb%3Ac", None, {}, "x=%20y") as response,
    ):
        await response.read()
    assert heads[0].startswith(b"GET /v1/models/a%2Fb%3Ac?x=%20y HTTP/1.1\r\n")


async def test_a_path_that_cannot_be_forwarded_is_refused() -> None:
    async with upstream_on(echo_forever()) as (server, upstream):
        with pytest.raises(UpstreamFailure) as failure:
            async with upstream.request("GET", "/api/tags x", None, {}):
                pass
    assert failure.value.status == 400
    assert server.connections == 0


@pytest.mark.parametrize(
    ("url", "problem"),
    [("ftp://ollama:11434", "http:// or https://"), ("http://", "no host"),
     ("http://ollama:99999", "[Pp]ort")],
)  # fmt: skip
def test_an_upstream_url_the_client_cannot_use_is_refused_at_start(url: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(upstream_url=url)


async def test_keep_alive_connections_are_reused() -> None:
    async with upstream_on(echo_forever()) as (server, upstream):
        for n in range(5):
            assert await read_all(upstream, body=b"%d" % n) == (200, b"%d" % n)
    assert server.connections == 1


async def test_chunks_arrive_while_the_server_is_still_sending() -> None:
    go_on = asyncio.Event()

    async def two_parts(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await go_on.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    async with (
        upstream_on(two_parts) as (_server, upstream),
        upstream.request("POST", "/api/generate", b"{}", {}) as response,
    ):
        chunks = response.chunks()
        assert await anext(chunks) == b"first"  # before the server sent the rest
        go_on.set()
        assert [chunk async for chunk in chunks] == [b"second"]


async def test_a_request_on_a_kept_connection_closed_unanswered_is_sent_again_once() -> None:
    """The server reads the second request on the kept connection and closes it without
    a byte of answer (an idle timeout racing the request): it goes again on a new one."""
    requests: list[bytes] = []

    async def answers_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        requests.append(body)
        writer.write(answer(body))
        _, body = await read_request(reader)
        requests.append(body)  # read, never answered: the connection just closes

    async with upstream_on(answers_once) as (server, upstream):
        assert await read_all(upstream, body=b"1") == (200, b"1")
        assert await read_all(upstream, body=b"2") == (200, b"2")
    assert requests == [b"1", b"2", b"2"]
    assert server.connections == 2


async def test_a_fresh_connection_closed_unanswered_is_not_sent_again() -> None:
    """Only a kept connection can be stale; a new one that dies is the upstream failing."""
    requests: list[bytes] = []

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        requests.append(body)

    async with upstream_on(never_answers) as (server, upstream):
        with pytest.raises(UpstreamFailure) as raised:
            await read_all(upstream)
    assert raised.value.reason == "protocol"
    assert raised.value.status == 502
    assert requests == [b"{}"]
    assert server.connections == 1


async def test_a_kept_connection_closed_after_part_of_an_answer_is_not_retried() -> None:
    """Bytes of an answer came back, so the request was handled: sending it again could
    run a generation twice."""

    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"ok"))
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncont")
        await writer.drain()

    async with upstream_on(half) as (server, upstream):
        assert await read_all(upstream) == (200, b"ok")
        with pytest.raises(UpstreamFailure) as raised:
            await read_all(upstream)
    assert raised.value.reason == "protocol"
    assert server.connections == 1


async def test_connection_close_from_the_server_is_honoured() -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(answer(b"ok", b"connection: close\r\n"))

    async with upstream_on(closing) as (server, upstream):
        for _ in range(3):
            assert await read_all(upstream) == (200, b"ok")
    assert server.connections == 3


async def test_a_connection_lost_mid_body_is_an_error_not_an_end() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()

    async with (
        upstream_on(cut) as (_server, upstream),
        upstream.request("POST", "/api/generate", b"{}", {}) as response,
    ):
        chunks = response.chunks()
        assert await anext(chunks) == b"only part"
        with pytest.raises(UpstreamFailure) as raised:
            await anext(chunks)
    assert raised.value.reason == "stream"
    assert raised.value.status == 502


async def test_garbage_is_a_protocol_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await reader.read()

    async with upstream_on(garbage) as (_server, upstream):
        with pytest.raises(UpstreamFailure) as raised:
            await read_all(upstream)
    assert raised.value.reason == "protocol"
    assert raised.value.status == 502


async def test_nobody_listening_is_unreachable() -> None:
    upstream = Upstream(f"http://127.0.0.1:{free_port()}", GENEROUS, 4)
    await upstream.start()
    try:
        with pytest.raises(UpstreamFailure) as raised:
            await read_all(upstream)
    finally:
        await upstream.aclose()
    assert raised.value.reason == "connect"
    assert raised.value.status == 503
    assert "unreachable" in raised.value.message


async def test_head_has_no_body_and_the_next_request_still_works() -> None:
    async def with_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n")
            else:
                writer.write(answer(b"Ollama is running"))

    async with upstream_on(with_head) as (server, upstream):
        assert await read_all(upstream, "HEAD", b"") == (200, b"")
        assert await read_all(upstream, "GET", b"") == (200, b"Ollama is running")
    assert server.connections == 1


async def test_an_abandoned_response_drops_its_connection() -> None:
    """Ollama sees the client go (and stops generating) when a response is left unread."""
    closed = asyncio.Event()

    async def long(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await reader.read()  # returns when the client drops the connection
        closed.set()

    async with upstream_on(long) as (_server, upstream):
        async with upstream.request("POST", "/api/generate", b"{}", {}) as response:
            assert await anext(response.chunks()) == b"first"
        await asyncio.wait_for(closed.wait(), 2)


async def test_a_cancelled_call_drops_its_connection() -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()
        closed.set()

    async with upstream_on(silent) as (_server, upstream):
        call = asyncio.ensure_future(read_all(upstream))
        await asyncio.sleep(0.1)
        call.cancel()
        await asyncio.wait_for(closed.wait(), 2)


async def test_the_pool_never_opens_more_than_its_limit() -> None:
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(answer(b"ok"))

    async with upstream_on(slow, limit=1) as (server, upstream):
        first = asyncio.ensure_future(read_all(upstream))
        second = asyncio.ensure_future(read_all(upstream))
        await asyncio.sleep(0.1)
        assert server.connections == 1  # the second waits for the first's connection
        release.set()
        assert await first == (200, b"ok")
        assert await second == (200, b"ok")
    assert server.connections == 1


def trickle(every: float, count: int) -> Handler:
    """A chunked answer whose head comes at once and then one chunk every `every` s."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for _ in range(count):
                await asyncio.sleep(every)
                writer.write(b"1\r\nx\r\n")
            writer.write(b"0\r\n\r\n")

    return handler


async def test_no_head_within_the_first_byte_bound_fails_and_drops_the_connection() -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the client gives up
        closed.set()

    async with upstream_on(silent, Timeouts(2, 0.2, 5, 5)) as (_server, upstream):
        with pytest.raises(UpstreamFailure) as raised:
            await read_all(upstream)
        await asyncio.wait_for(closed.wait(), 2)  # Ollama sees the client go
    assert raised.value.status == 504
    assert raised.value.message == "upstream sent no response within 0.2s"


async def test_a_steady_stream_longer_than_the_idle_bound_is_not_idle() -> None:
    # 30 chunks 0.05 s apart: 1.5 s in all, three times the idle bound of 0.5 s.
    async with upstream_on(trickle(0.05, 30), Timeouts(2, 1, 0.5, 10)) as (_server, upstream):
        assert await read_all(upstream) == (200, b"x" * 30)


async def test_a_stream_that_stalls_fails_on_the_idle_bound() -> None:
    async with upstream_on(trickle(2, 2), Timeouts(2, 1, 0.2, 5)) as (_server, upstream):
        with pytest.raises(UpstreamFailure) as raised:
            await read_all(upstream)
    assert raised.value.status == 504
    assert raised.value.message == "upstream sent nothing for 0.2s"


async def test_a_stream_that_never_stalls_still_ends_on_the_total_bound() -> None:
    received: list[bytes] = []

    async def read_on(upstream: Upstream) -> None:
        async with upstream.request("POST", "/api/generate", b"{}", {}) as response:
            async for chunk in response.chunks():
                received.append(chunk)

    async with upstream_on(trickle(0.05, 100), Timeouts(2, 1, 0.2, 0.4)) as (_server, upstream):
        with pytest.raises(UpstreamFailure) as raised:
            await read_on(upstream)
    assert raised.value.message == "upstream exceeded the total time limit (0.4s)"
    assert 3 <= len(received) < 100


async def test_a_bound_firing_while_the_reader_is_busy_elsewhere_waits_for_it() -> None:
    """The idle bound measures the upstream, not the consumer: a consumer that takes
    longer than the bound between two reads does not make the stream idle."""
    got = []
    async with (
        upstream_on(trickle(0.05, 3), Timeouts(2, 1, 0.2, 5)) as (_server, upstream),
        upstream.request("POST", "/api/generate", b"{}", {}) as response,
    ):
        async for chunk in response.chunks():
            got.append(chunk)
            await asyncio.sleep(0.3)  # longer than the idle bound, outside the read
    assert b"".join(got) == b"xxx"


async def test_a_finished_response_leaves_no_bound_behind_on_its_kept_connection() -> None:
    async with upstream_on(trickle(0, 1), Timeouts(2, 0.5, 0.5, 0.5)) as (server, upstream):
        assert await read_all(upstream) == (200, b"x")
        await asyncio.sleep(0.8)  # past every bound of the first exchange
        assert await read_all(upstream) == (200, b"x")  # the same connection, still good
    assert server.connections == 1
