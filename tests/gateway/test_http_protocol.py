"""`JsonErrorsProtocol` against the uvicorn method it overrides, byte for byte.

The subclass rewrites uvicorn's `send_400_response` (the one answer uvicorn writes
itself, for a request it cannot parse). If uvicorn changes that method (its headers,
its framing, its signature), this says so: the two answers must differ only in the
body and its content type and length. The end-to-end check, a control byte in a
header refused in JSON, is in `test_paths.py`.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import orjson
from llm_gateway.http_protocol import JsonErrorsProtocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MESSAGE = "Invalid HTTP request received."


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def _answer(cls: type[HttpToolsProtocol]) -> tuple[list[bytes], bytes, bool]:
    """What `cls.send_400_response` writes: head lines, body, and whether it closed."""
    protocol = cls.__new__(cls)  # no server: only what the method reads is set
    transport = _Transport()
    headers = [(b"server", b"uvicorn"), (b"date", b"Mon, 07 Dec 2026 12:00:00 GMT")]
    protocol.server_state = SimpleNamespace(default_headers=headers)  # type: ignore[assignment]
    protocol.transport = transport  # type: ignore[assignment]
    protocol.send_400_response(MESSAGE)
    head, _, body = transport.written.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body, transport.closed


def test_the_override_keeps_uvicorns_signature() -> None:
    theirs = inspect.signature(HttpToolsProtocol.send_400_response)
    ours = inspect.signature(JsonErrorsProtocol.send_400_response)
    assert list(theirs.parameters) == list(ours.parameters) == ["self", "msg"]


def test_only_the_body_and_its_type_differ_from_uvicorns_400() -> None:
    their_head, their_body, their_close = _answer(HttpToolsProtocol)
    our_head, our_body, our_close = _answer(JsonErrorsProtocol)
    assert their_body == MESSAGE.encode()
    assert orjson.loads(our_body) == {"error": MESSAGE}
    assert their_close
    assert our_close

    def kept(head: list[bytes]) -> list[bytes]:
        return [
            line
            for line in head
            if not line.lower().startswith((b"content-type:", b"content-length:"))
        ]

    assert kept(our_head) == kept(their_head)  # status line, uvicorn's headers, close
    assert b"content-type: application/json; charset=utf-8" in our_head
    assert f"content-length: {len(our_body)}".encode() in our_head
