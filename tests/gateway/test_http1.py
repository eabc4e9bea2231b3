"""The gateway's HTTP/1.1 client against scripted servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from llm_gateway.http1 import (
    Bounds,
    ConnectionLost,
    Pool,
    ProtocolError,
    ResponseTimeout,
    _Slots,
)

from tests.support.ports import free_port
from tests.support.scripted_http import Handler, Server, answer, read_request, serve

HEADERS = b"host: test\r\ncontent-type: application/json\r\n"


@asynccontextmanager
async def pool_on(handler: Handler, **options: Any) -> AsyncIterator[tuple[Server, Pool]]:
    """A scripted server and a pool of connections to it, closed at the end."""
    async with serve(handler) as server:
        pool = Pool("127.0.0.1", server.port, **options)
        try:
            yield server, pool
        finally:
            await pool.aclose()


async def read_all(pool: Pool, method: str = "POST", body: bytes = b"{}") -> tuple[int, bytes]:
    response = await pool.request(method, "/api/generate", HEADERS, body)
    chunks = []
    while chunk := await response.next_chunk():
        chunks.append(chunk)
    response.release()
    return response.status, b"".join(chunks)


async def test_keep_alive_connections_are_reused_and_requests_arrive_whole() -> None:
    seen: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, body = await read_request(reader)
            seen.append(head + body)
            writer.write(answer(body))

    async with pool_on(echo) as (server, pool):
        for i in range(5):
            assert await read_all(pool, body=b'{"n": %d}' % i) == (200, b'{"n": %d}' % i)
    assert server.connections == 1
    assert seen[0].startswith(b"POST /api/generate HTTP/1.1\r\nhost: test\r\n")
    assert b"content-length: 8\r\n\r\n" in seen[0]


async def test_chunks_arrive_while_the_server_is_still_sending() -> None:
    go_on = asyncio.Event()

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await go_on.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await reader.read()

    async with pool_on(stream) as (_server, pool):
        response = await pool.request("POST", "/api/generate", HEADERS, b"{}")
        assert await response.next_chunk() == b"first"  # before the server sent more
        go_on.set()
        assert await response.next_chunk() == b"second"
        assert await response.next_chunk() == b""
        assert response.complete
        response.release()


async def test_a_body_ended_by_closing_the_connection_is_complete_and_not_reused() -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        await writer.drain()

    async with pool_on(until_close) as (server, pool):
        assert await read_all(pool) == (200, b"all of it")
        assert await read_all(pool) == (200, b"all of it")
    assert server.connections == 2


async def test_a_kept_connection_known_to_be_closed_is_not_used() -> None:
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"ok"))  # keep-alive by default, then closed anyway
        await writer.drain()

    async with pool_on(one_answer) as (server, pool):
        assert await read_all(pool) == (200, b"ok")
        await asyncio.sleep(0.05)  # the close has reached the client
        assert await read_all(pool) == (200, b"ok")
    assert server.connections == 2


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

    async with pool_on(answers_once) as (server, pool):
        assert await read_all(pool, body=b"1") == (200, b"1")
        assert await read_all(pool, body=b"2") == (200, b"2")
    assert requests == [b"1", b"2", b"2"]
    assert server.connections == 2


async def test_a_kept_connection_closed_after_part_of_an_answer_is_not_retried() -> None:
    """Bytes of an answer came back, so the request was handled: sending it again could
    run a generation twice."""

    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"ok"))
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncont")
        await writer.drain()

    async with pool_on(half) as (server, pool):
        assert await read_all(pool) == (200, b"ok")
        with pytest.raises(ConnectionLost):
            await pool.request("POST", "/api/generate", HEADERS, b"{}")
    assert server.connections == 1


async def test_connection_close_from_the_server_is_honoured() -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(answer(b"ok", b"connection: close\r\n"))

    async with pool_on(closing) as (server, pool):
        for _ in range(3):
            assert await read_all(pool) == (200, b"ok")
    assert server.connections == 3


async def test_a_connection_lost_mid_body_is_an_error_not_an_end() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()

    async with pool_on(cut) as (_server, pool):
        response = await pool.request("POST", "/api/generate", HEADERS, b"{}")
        assert await response.next_chunk() == b"only part"
        with pytest.raises(ConnectionLost):
            await response.next_chunk()
        response.release()


async def test_garbage_is_a_protocol_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await reader.read()

    async with pool_on(garbage) as (_server, pool):
        with pytest.raises(ProtocolError):
            await pool.request("POST", "/api/generate", HEADERS, b"{}")


async def test_nobody_listening_is_an_os_error() -> None:
    pool = Pool("127.0.0.1", free_port())
    with pytest.raises(OSError):  # noqa: PT011 - refused, whatever the errno's name
        await pool.request("GET", "/", HEADERS, b"")


async def test_head_has_no_body_and_the_next_request_still_works() -> None:
    async def with_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n")
            else:
                writer.write(answer(b"Ollama is running"))

    async with pool_on(with_head) as (_server, pool):
        assert await read_all(pool, "HEAD", b"") == (200, b"")
        assert await read_all(pool, "GET", b"") == (200, b"Ollama is running")


async def test_an_abandoned_response_drops_its_connection() -> None:
    closed = asyncio.Event()

    async def long(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await reader.read()  # returns when the client drops the connection
        closed.set()

    async with pool_on(long) as (_server, pool):
        response = await pool.request("POST", "/api/generate", HEADERS, b"{}")
        assert await response.next_chunk() == b"first"
        response.release()
        await asyncio.wait_for(closed.wait(), 2)


async def test_the_pool_never_opens_more_than_its_limit() -> None:
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(answer(b"ok"))

    async with pool_on(slow, limit=1) as (server, pool):
        first = asyncio.ensure_future(read_all(pool))
        second = asyncio.ensure_future(read_all(pool))
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

    async with pool_on(silent, bounds=Bounds(0.2, 5, 5)) as (_server, pool):
        with pytest.raises(ResponseTimeout) as raised:
            await pool.request("POST", "/api/generate", HEADERS, b"{}")
        assert raised.value.phase == "first_byte"
        await asyncio.wait_for(closed.wait(), 2)  # Ollama sees the client go


async def test_a_steady_stream_longer_than_the_idle_bound_is_not_idle() -> None:
    # 30 chunks 0.05 s apart: 1.5 s in all, three times the idle bound of 0.5 s.
    async with pool_on(trickle(0.05, 30), bounds=Bounds(1, 0.5, 10)) as (_server, pool):
        assert await read_all(pool) == (200, b"x" * 30)


async def test_a_stream_that_stalls_fails_on_the_idle_bound() -> None:
    async with pool_on(trickle(2, 2), bounds=Bounds(1, 0.2, 5)) as (_server, pool):
        response = await pool.request("POST", "/api/generate", HEADERS, b"{}")
        with pytest.raises(ResponseTimeout) as raised:
            await response.next_chunk()
        assert raised.value.phase == "idle"
        response.release()


async def test_a_stream_that_never_stalls_still_ends_on_the_total_bound() -> None:
    async with pool_on(trickle(0.05, 100), bounds=Bounds(1, 0.2, 0.4)) as (_server, pool):
        response = await pool.request("POST", "/api/generate", HEADERS, b"{}")
        received: list[bytes] = []

        async def read_on() -> None:
            while chunk := await response.next_chunk():
                received.append(chunk)

        with pytest.raises(ResponseTimeout) as raised:
            await read_on()
        assert raised.value.phase == "total"
        assert 3 <= len(received) < 100
        response.release()


async def test_a_finished_response_leaves_no_bound_behind_on_its_kept_connection() -> None:
    async with pool_on(trickle(0, 1), bounds=Bounds(0.5, 0.5, 0.5)) as (server, pool):
        assert await read_all(pool) == (200, b"x")
        await asyncio.sleep(0.8)  # past every bound of the first exchange
        assert await read_all(pool) == (200, b"x")  # the same connection, still good
    assert server.connections == 1


async def test_send_now_writes_at_once_on_a_kept_connection_and_only_then() -> None:
    requests: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, body = await read_request(reader)
            requests.append(body)
            writer.write(answer(body))

    async with pool_on(echo, limit=1) as (server, pool):
        assert pool.send_now("POST", "/api/generate", HEADERS, b"{}") is None  # none kept yet
        assert await read_all(pool, body=b'{"n": 1}') == (200, b'{"n": 1}')
        sent = pool.send_now("POST", "/api/generate", HEADERS, b'{"n": 2}')
        assert sent is not None  # written before any await
        assert pool.send_now("POST", "/api/generate", HEADERS, b"{}") is None  # no slot left
        await asyncio.sleep(0.05)
        assert requests == [b'{"n": 1}', b'{"n": 2}']
        response = await sent.response()
        assert await response.next_chunk() == b'{"n": 2}'
        response.release()
    assert server.connections == 1


async def test_an_abandoned_request_frees_its_slot_and_drops_its_connection() -> None:
    dropped = asyncio.Event()

    async def answer_once_then_hang(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(answer(b"ok"))
        await read_request(reader)  # the request that will be abandoned
        await reader.read()
        dropped.set()

    async with pool_on(answer_once_then_hang, limit=1) as (server, pool):
        assert await read_all(pool) == (200, b"ok")
        sent = pool.send_now("POST", "/api/generate", HEADERS, b"{}")
        assert sent is not None
        sent.abandon()
        sent.abandon()  # twice is harmless: the slot is given back once
        await asyncio.wait_for(dropped.wait(), 2)  # Ollama sees the client go
        # The one slot is free again: a new request gets a new connection.
        assert await read_all(pool) == (200, b"ok")
    assert server.connections == 2


async def test_a_slot_handed_to_a_cancelled_waiter_passes_to_the_next() -> None:
    slots = _Slots(1)
    assert slots.take_now()
    first = asyncio.ensure_future(slots.take())
    second = asyncio.ensure_future(slots.take())
    await asyncio.sleep(0)
    slots.give()  # to `first`, which is cancelled before it runs again
    first.cancel()
    await asyncio.wait_for(second, 1)
    assert first.cancelled()
    assert not slots.take_now()  # `second` holds the one slot
    slots.give()
    assert slots.take_now()
