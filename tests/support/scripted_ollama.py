"""A scripted Ollama: exact response bytes per request, on connections the test can see.

It stands where Ollama would, in front of a real gateway process. `/api/tags`, `/api/ps`
(the model loaded) and `/api/version` always get a plain answer (the gateway reads
them at start, and a router polls /api/ps); every other request is a
generation, numbered in arrival order and answered by the test's `Script`, whose
answer text names the request (`answer <number> to <prompt>`), so a test can tell
which request an answer belongs to. Each request is noted with the connection it
came on (1 = the first accepted), so a test can tell a kept connection from a new one.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tests.support.scripted_http import ThreadedServer, read_request

MODEL = "llama3.2"
DIGEST = "6f" * 32
CREATED_AT = "2026-01-01T00:00:00.000000Z"

JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\n"
NDJSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"


@dataclass(frozen=True, slots=True)
class Seen:
    """One generation request as it reached the upstream."""

    connection: int  # 1 = the first connection accepted
    number: int  # 1 = the first generation request
    prompt: str
    stream: bool

    @property
    def text(self) -> str:
        return answer_text(self.prompt, self.number)


def answer_text(prompt: str, number: int) -> str:
    """The text of the answer to the `number`th generation request, asking `prompt`."""
    return f"answer {number} to {prompt}"


def _final_object(text: str) -> dict[str, Any]:
    return {
        "model": MODEL,
        "created_at": CREATED_AT,
        "response": text,
        "done": True,
        "done_reason": "stop",
        "total_duration": 5_000_000,
        "prompt_eval_count": 3,
        "prompt_eval_duration": 1_000_000,
        "eval_count": 4,
        "eval_duration": 4_000_000,
    }


def json_body(seen: Seen) -> bytes:
    """What Ollama answers a `stream: false` generate with."""
    return orjson.dumps(_final_object(seen.text))


def ndjson_lines(seen: Seen) -> list[bytes]:
    """What Ollama streams for a generate: one line per token, then the final line."""
    tokens = re.findall(r"\S+|\s+\S+", seen.text)
    lines = [
        orjson.dumps({"model": MODEL, "created_at": CREATED_AT, "response": t, "done": False})
        + b"\n"
        for t in tokens
    ]
    return [*lines, orjson.dumps(_final_object("")) + b"\n"]


def body_parts(seen: Seen) -> list[bytes]:
    """The answer's body in the pieces a chunked answer sends it in (a few, either way)."""
    if seen.stream:
        return ndjson_lines(seen)
    body = json_body(seen)
    third = len(body) // 3
    return [body[:third], body[third : 2 * third], body[2 * third :]]


def head(seen: Seen) -> bytes:
    """Status line and content type, not yet ended (framing headers follow)."""
    return NDJSON_HEAD if seen.stream else JSON_HEAD


def chunked(parts: list[bytes], extension: bytes = b"", trailers: bytes = b"") -> bytes:
    """`parts` in chunked framing; `extension` (e.g. b";name=value") on every chunk size."""
    chunks = [b"%x%s\r\n%s\r\n" % (len(part), extension, part) for part in parts]
    return b"".join(chunks) + b"0" + extension + b"\r\n" + trailers + b"\r\n"


def plain_answer(seen: Seen) -> bytes:
    """The answer as Ollama frames it: NDJSON chunked when streaming, else Content-Length."""
    if seen.stream:
        return head(seen) + b"transfer-encoding: chunked\r\n\r\n" + chunked(ndjson_lines(seen))
    body = json_body(seen)
    return head(seen) + b"content-length: %d\r\n\r\n%s" % (len(body), body)


STRAY_TEXT = "stray bytes that answer nobody"


def stray_answer() -> bytes:
    """A whole, well-formed answer that no request asked for."""
    body = orjson.dumps(_final_object(STRAY_TEXT))
    return JSON_HEAD + b"content-length: %d\r\n\r\n%s" % (len(body), body)


TAGS = orjson.dumps(
    {
        "models": [
            {
                "name": f"{MODEL}:latest",
                "model": f"{MODEL}:latest",
                "modified_at": CREATED_AT,
                "size": 2019393189,
                "digest": DIGEST,
                "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B"},
            }
        ]
    }
)


PS = orjson.dumps(
    {
        "models": [
            {
                "name": f"{MODEL}:latest",
                "model": f"{MODEL}:latest",
                "size": 2019393189,
                "digest": DIGEST,
                "expires_at": "2099-01-01T00:00:00Z",
                "size_vram": 2019393189,
                "context_length": 4096,
            }
        ]
    }
)
# The GETs answered plainly, whatever the script.
PLAIN = {b"/api/tags": TAGS, b"/api/ps": PS, b"/api/version": b'{"version":"0.13.0"}'}


class Connection:
    """One accepted connection, as a script sees it."""

    def __init__(self, number: int, writer: asyncio.StreamWriter) -> None:
        self.number = number
        self.writer = writer
        self.ended = False

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        """End the connection with a FIN (after what was written)."""
        self.ended = True
        self.writer.close()

    def reset(self) -> None:
        """End the connection with an RST (SO_LINGER 0), dropping anything unsent."""
        self.ended = True
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


# How a script answers one generation request on its connection.
Script = Callable[[Seen, Connection], Awaitable[None]]


async def answer_plainly(seen: Seen, connection: Connection) -> None:
    await connection.send(plain_answer(seen))


class ScriptedOllama:
    """The scripted upstream, serving in its own thread while in a `with`."""

    def __init__(self, script: Script = answer_plainly, tls: ssl.SSLContext | None = None):
        self.script = script
        self.scheme = "https" if tls is not None else "http"
        self.seen: list[Seen] = []
        # Every request: (connection, "METHOD /path"), in arrival order.
        self.requests: list[tuple[int, str]] = []
        self._connections: dict[int, Connection] = {}
        self._accepted = 0
        self._gate = asyncio.Event()
        self._server = ThreadedServer(self._handle, tls)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.port}"

    def __enter__(self) -> ScriptedOllama:
        self._server.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.__exit__(*exc_info)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        connection = self._connections[self._accepted] = Connection(self._accepted, writer)
        while not connection.ended:
            request_head, body = await read_request(reader)
            method, path = request_head.split(b" ", 2)[:2]
            self.requests.append((connection.number, f"{method.decode()} {path.decode()}"))
            plain = PLAIN.get(path)
            if plain is not None:
                await connection.send(
                    JSON_HEAD + b"content-length: %d\r\n\r\n%s" % (len(plain), plain)
                )
                continue
            data = orjson.loads(body)
            seen = Seen(
                connection.number,
                len(self.seen) + 1,
                str(data.get("prompt")),
                data.get("stream") is not False,
            )
            self.seen.append(seen)
            await self.script(seen, connection)

    # -- driven from the test's thread ---------------------------------------------

    def inject(self, connection: int, data: bytes, then: str) -> None:
        """Write `data` on `connection` (idle, between requests), then `"keep"` it open or
        `"close"` it; returns once the bytes are handed to the kernel."""

        async def write() -> None:
            target = self._connections[connection]
            await target.send(data)
            if then == "close":
                target.close()

        self._server.run(write())

    def open_gate(self) -> None:
        """Let a script waiting in `gate()` go on."""
        self._server.loop.call_soon_threadsafe(self._gate.set)

    async def gate(self, timeout: float = 10.0) -> None:
        """(In a script) wait until the test calls `open_gate()`."""
        await asyncio.wait_for(self._gate.wait(), timeout)

    def seen_for(self, number: int) -> Seen:
        assert len(self.seen) >= number, f"the upstream saw no request #{number}: {self.story()}"
        return self.seen[number - 1]

    def story(self) -> str:
        """What the upstream saw, for failure messages."""
        prompts = {s.number: s for s in self.seen}
        lines, number = [], 0
        for connection, request in self.requests:
            if request.split(" ")[-1].encode() in PLAIN:
                lines.append(f"conn {connection}: {request}")
                continue
            number += 1
            seen = prompts.get(number)
            what = f"#{number} {seen.prompt!r} stream={seen.stream}" if seen else f"#{number}"
            lines.append(f"conn {connection}: {request} {what}")
        return "; ".join(lines) or "nothing"
