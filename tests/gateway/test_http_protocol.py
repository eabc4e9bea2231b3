"""The gateway's uvicorn protocol: the writes of one event-loop turn leave as one."""

from __future__ import annotations

import asyncio
from typing import Any

from llm_gateway.http_protocol import CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name == "sockname" else default


def coalescing() -> tuple[CoalescingTransport, RecordingTransport]:
    real = RecordingTransport()
    return CoalescingTransport(real, asyncio.get_running_loop()), real  # type: ignore[arg-type]


async def test_a_head_and_its_body_leave_in_one_write_at_once() -> None:
    transport, real = coalescing()
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"")
    assert real.writes == []  # the head waits for its body ...
    transport.write(b"{}")
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]  # ... not longer
    await asyncio.sleep(0)
    assert len(real.writes) == 1


async def test_a_lone_write_leaves_when_the_turn_ends() -> None:
    """A stream's head, before its first chunk: held one pass of the loop, no more."""
    transport, real = coalescing()
    transport.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    transport.write(b"5\r\nfirst\r\n")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"5\r\nfirst\r\n"]


async def test_close_sends_what_is_pending_first_and_abort_drops_it() -> None:
    transport, real = coalescing()
    transport.write(b"last bytes")
    transport.close()
    assert real.writes == [b"last bytes"]
    assert real.closed
    transport, real = coalescing()
    transport.write(b"never sent")
    transport.abort()
    await asyncio.sleep(0)
    assert real.writes == []
    assert real.aborted


async def test_nothing_is_written_to_a_closing_transport() -> None:
    transport, real = coalescing()
    transport.write(b"too late")
    real.closed = True
    await asyncio.sleep(0)
    assert real.writes == []


async def test_everything_else_is_the_real_transports() -> None:
    transport, real = coalescing()
    assert transport.get_extra_info("sockname") == ("127.0.0.1", 8000)
    assert transport.is_closing() is False
    real.closed = True
    assert transport.is_closing() is True
