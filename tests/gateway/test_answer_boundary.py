"""Where one upstream answer ends and the next begins, seen from the gateway's clients.

A scripted Ollama (tests/support/scripted_ollama.py) sends exact bytes: interim 1xx
responses, stray bytes on an idle kept connection, close-delimited and chunked bodies
with extensions and trailers, a reset in the middle of a body. A real gateway process
stands in front of it. Every answer names the request it belongs to (`answer <n> to
<prompt>`), so each test asserts that every client gets its own answer, never
another's, and that the connection the answers travel on is kept or dropped as it must.
These tests speak HTTP to the gateway only: they hold whatever HTTP client is inside.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import trustme

from tests.support.gateway import GatewayFactory, GatewayProcess
from tests.support.redis_server import RedisServer
from tests.support.scripted_ollama import (
    MODEL,
    STRAY_TEXT,
    Connection,
    Script,
    ScriptedOllama,
    Seen,
    answer_plainly,
    answer_text,
    body_parts,
    chunked,
    head,
    plain_answer,
    stray_answer,
)

# Bounds for a wrong answer to show up as a failure rather than a hang (the gateway's
# own first-byte and idle bounds are lowered to this as well).
CLIENT_TIMEOUT = 8.0
UPSTREAM_BOUND = "4"

StartFn = Callable[..., tuple[ScriptedOllama, GatewayProcess]]


@pytest.fixture
def start(gateway_factory: GatewayFactory, redis_server: RedisServer) -> Iterator[StartFn]:
    """`start(script, tls=None, **env)`: a scripted Ollama and a gateway in front of it."""
    with ExitStack() as stack:

        def run(
            script: Script = answer_plainly, tls: trustme.LeafCert | None = None, **env: str
        ) -> tuple[ScriptedOllama, GatewayProcess]:
            context = None
            if tls is not None:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                tls.configure_cert(context)
            ollama = stack.enter_context(ScriptedOllama(script, context))
            settings = {
                "GATEWAY_UPSTREAM_URL": ollama.url,
                "GATEWAY_REDIS_URL": redis_server.url,
                # No background /api/tags between the requests a test sends.
                "GATEWAY_MODEL_REFRESH_SECONDS": "3600",
                "GATEWAY_FIRST_BYTE_TIMEOUT_SECONDS": UPSTREAM_BOUND,
                "GATEWAY_IDLE_TIMEOUT_SECONDS": UPSTREAM_BOUND,
                **env,
            }
            return ollama, gateway_factory(**settings)

        yield run


@dataclass
class Got:
    """What the gateway answered one generate request."""

    prompt: str
    status: int
    cache: str | None
    text: str  # the answer's text (streamed tokens joined)
    done: bool  # the answer ended with Ollama's final object
    error: str | None  # the `error` of an error answer or of a stream's last line
    raw: bytes

    def describe(self) -> str:
        body = self.raw[:300].decode(errors="replace")
        return f"status {self.status}, X-Cache {self.cache}, text {self.text!r}, body {body!r}"


def unique(name: str) -> str:
    """A prompt no other test (or earlier run against the same Redis) has asked."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def request_body(prompt: str, stream: bool) -> dict[str, object]:
    # Greedy decoding: cacheable, so X-Cache says MISS when the answer came from upstream.
    return {"model": MODEL, "prompt": prompt, "stream": stream, "options": {"temperature": 0}}


def parse(prompt: str, response: httpx.Response, raw: bytes, stream: bool) -> Got:
    cache = response.headers.get("x-cache")
    text, done, error = "", False, None
    if response.status_code == 200 and stream:
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                error = f"not JSON: {line[:100]!r}"
                break
            if "error" in obj:
                error = str(obj["error"])
                break
            text += str(obj.get("response", ""))
            done = obj.get("done") is True
    else:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = {"error": f"not JSON: {raw[:100]!r}"}
        if not isinstance(obj, dict):
            obj = {"error": f"not an object: {raw[:100]!r}"}
        if "error" in obj:
            error = str(obj["error"])
        else:
            text, done = str(obj.get("response", "")), obj.get("done") is True
    return Got(prompt, response.status_code, cache, text, done, error, raw)


def generate(http: httpx.Client, prompt: str, stream: bool) -> Got:
    try:
        response = http.post("/api/generate", json=request_body(prompt, stream))
    except httpx.HTTPError as exc:
        return Got(prompt, 0, None, "", False, f"no answer: {exc!r}", b"")
    return parse(prompt, response, response.content, stream)


def whose(text: str) -> str:
    """Which request(s) an answer's text belongs to, as far as it tells."""
    if text == STRAY_TEXT:
        return "the stray bytes the upstream wrote on the idle connection"
    found = re.findall(r"answer (\d+) to ([a-z-]+-[0-9a-f]{8})", text)
    if not found:
        return "no request's answer"
    named = ", ".join(f"#{number} ({prompt!r})" for number, prompt in found)
    if len(found) == 1 and text == answer_text(found[0][1], int(found[0][0])):
        return f"the answer to request {named}"
    return f"pieces of the answers to {named}"


def assert_own(answers: list[Got], ollama: ScriptedOllama, first: int = 1) -> None:
    """Each of `answers` (to the `first`th request the upstream saw and those after) is
    that request's own whole answer, and came from upstream (X-Cache MISS)."""
    problems = []
    for number, got in enumerate(answers, first):
        want = answer_text(got.prompt, number)
        if got.status != 200 or got.text != want or not got.done:
            problems.append(
                f"request #{number} ({got.prompt!r}) got {whose(got.text)}: {got.describe()}"
            )
        elif got.cache != "MISS":
            problems.append(f"request #{number} did not come from upstream: {got.describe()}")
    assert not problems, (
        "not every request got its own answer:\n  "
        + "\n  ".join(problems)
        + f"\nupstream saw: {ollama.story()}"
    )


def same_connection(ollama: ScriptedOllama, first: int, second: int) -> None:
    a, b = ollama.seen_for(first), ollama.seen_for(second)
    assert a.connection == b.connection, (
        f"requests #{first} and #{second} should share one kept upstream connection "
        f"(the scenario needs it); upstream saw: {ollama.story()}"
    )


def new_connection(ollama: ScriptedOllama, first: int, second: int, why: str) -> None:
    a, b = ollama.seen_for(first), ollama.seen_for(second)
    assert a.connection != b.connection, (
        f"request #{second} went on request #{first}'s connection, which {why}; "
        f"upstream saw: {ollama.story()}"
    )


def client(gateway: GatewayProcess) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, timeout=CLIENT_TIMEOUT)


def settle(http: httpx.Client) -> None:
    """Let the gateway read what its upstream connections received since.

    An endpoint that needs no upstream, answered twice: bytes that were waiting on an
    upstream socket when the probe arrived were read in the same turn of the gateway's
    event loop (or an earlier one), a close noticed by the next turn at the latest.
    """
    for _ in range(2):
        assert http.get("/health").status_code == 200
    time.sleep(0.05)


# -- interim (1xx) responses --------------------------------------------------------

INTERIM = {
    "100": b"HTTP/1.1 100 Continue\r\n\r\n",
    "103": b"HTTP/1.1 103 Early Hints\r\n\r\n",
    "103-with-headers": (
        b"HTTP/1.1 103 Early Hints\r\n"
        b"Link: </style.css>; rel=preload; as=style\r\n"
        b"Link: </app.js>; rel=preload; as=script\r\n\r\n"
    ),
    "100-then-103": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "ndjson"])
@pytest.mark.parametrize("interim", list(INTERIM))
def test_an_interim_response_is_not_the_answer(start: StartFn, interim: str, stream: bool) -> None:
    """1xx heads come before the real answer: the answer after them is this request's,
    and the next requests on the same kept connection get theirs, not the one before's."""

    async def script(seen: Seen, connection: Connection) -> None:
        if seen.number == 1:
            await connection.send(INTERIM[interim])
            await asyncio.sleep(0.1)  # the interim head on its own, as a server sends it
        await connection.send(plain_answer(seen))

    ollama, gateway = start(script)
    prompts = [unique("first"), unique("second"), unique("third")]
    with client(gateway) as http:
        answers = [generate(http, prompt, stream) for prompt in prompts]
    assert_own(answers, ollama)
    same_connection(ollama, 1, 2)
    same_connection(ollama, 2, 3)


# -- bytes on an idle kept connection -----------------------------------------------

STRAY = {
    "408-then-close": (
        b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        "close",
    ),
    "408-kept-open": (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n",
        "keep",
    ),
    "stray-answer-kept-open": (
        stray_answer(),
        "keep",
    ),
    "stray-answer-then-close": (
        stray_answer(),
        "close",
    ),
    "junk-kept-open": (b"\x00garbage that is not HTTP\r\n\r\n", "keep"),
}


@pytest.mark.parametrize("stray", list(STRAY))
def test_bytes_on_an_idle_connection_are_nobodys_answer(start: StartFn, stray: str) -> None:
    """Bytes the upstream writes on a kept connection while no request is on it (a 408
    before it closes, or anything else) answer no request: the next request goes on a
    fresh connection and gets its own answer. (aiohttp's pool, 3.14.5 as checked, hands
    such a connection out again with the bytes queued as the next answer:
    aio-libs/aiohttp#13656.)"""
    data, then = STRAY[stray]
    ollama, gateway = start()
    first, second, third = unique("before"), unique("after"), unique("later")
    with client(gateway) as http:
        got_first = generate(http, first, stream=False)
        assert_own([got_first], ollama)
        ollama.inject(ollama.seen_for(1).connection, data, then)
        settle(http)
        got_second = generate(http, second, stream=False)
        got_third = generate(http, third, stream=True)
    assert_own([got_second, got_third], ollama, first=2)
    new_connection(ollama, 1, 2, f"had sent unasked bytes ({stray})")


# -- close-delimited body -------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "ndjson"])
@pytest.mark.parametrize("announced", [False, True], ids=["silent", "connection-close"])
def test_a_body_delimited_by_the_close_arrives_whole(
    start: StartFn, stream: bool, announced: bool
) -> None:
    """No Content-Length, not chunked: the body is everything up to the close. All of
    it reaches the client, and the next request goes on a new connection."""

    async def script(seen: Seen, connection: Connection) -> None:
        if seen.number != 1:
            await connection.send(plain_answer(seen))
            return
        framing = b"connection: close\r\n" if announced else b""
        await connection.send(head(seen) + framing + b"\r\n")
        for part in body_parts(seen):
            await connection.send(part)
            await asyncio.sleep(0.02)  # several reads, as a live stream arrives
        connection.close()

    ollama, gateway = start(script)
    first, second = unique("until-close"), unique("next")
    with client(gateway) as http:
        got_first = generate(http, first, stream)
        got_second = generate(http, second, stream)
    assert_own([got_first, got_second], ollama)
    new_connection(ollama, 1, 2, "had ended with the close")


# -- chunked framing: extensions and trailers ----------------------------------------

CHUNKED = {
    "extensions": (b";name=value", b""),
    "quoted-extension": (b';name="quoted value";flag', b""),
    "trailers": (b"", b"X-Trailer-One: 1\r\nX-Checksum: abc\r\n"),
    "extensions-and-trailers": (b";ext=1", b"X-Trailer: yes\r\n"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "ndjson"])
@pytest.mark.parametrize("framing", list(CHUNKED))
def test_chunk_extensions_and_trailers_are_framing_not_body(
    start: StartFn, framing: str, stream: bool
) -> None:
    """Chunk extensions and trailers belong to the framing: the body arrives intact,
    and the next request on the same kept connection gets its own answer."""
    extension, trailers = CHUNKED[framing]

    async def script(seen: Seen, connection: Connection) -> None:
        if seen.number != 1:
            await connection.send(plain_answer(seen))
            return
        framed = chunked(body_parts(seen), extension, trailers)
        await connection.send(head(seen) + b"transfer-encoding: chunked\r\n\r\n" + framed)

    ollama, gateway = start(script)
    first, second = unique("chunked"), unique("next")
    with client(gateway) as http:
        got_first = generate(http, first, stream)
        got_second = generate(http, second, stream)
    assert_own([got_first, got_second], ollama)
    same_connection(ollama, 1, 2)


# -- a reset in the middle of a chunked body -----------------------------------------


def test_a_reset_mid_stream_ends_the_stream_with_an_error_line(start: StartFn) -> None:
    """The status (200) and the first tokens have gone out: like Ollama, the stream ends
    with an `{"error": ...}` line. Nothing is cached, and the next request, the same
    one, goes upstream again and gets its own answer."""

    async def script(seen: Seen, connection: Connection) -> None:
        if seen.number != 1:
            await connection.send(plain_answer(seen))
            return
        lines = body_parts(seen)
        await connection.send(head(seen) + b"transfer-encoding: chunked\r\n\r\n")
        await connection.send(chunked(lines[:2])[: -len(b"0\r\n\r\n")])
        await ollama.gate()  # until the client has the first tokens
        connection.reset()

    ollama, gateway = start(script)
    prompt = unique("reset")
    with client(gateway) as http:
        with http.stream("POST", "/api/generate", json=request_body(prompt, True)) as response:
            lines = response.iter_lines()
            received = [next(lines)]
            ollama.open_gate()
            received += list(lines)
        raw = "\n".join(received).encode()
        cut = parse(prompt, response, raw, stream=True)
        again = generate(http, prompt, stream=True)
    assert cut.status == 200, f"the cut stream had started with a 200: {cut.describe()}"
    assert cut.cache == "MISS", f"the cut stream came from upstream: {cut.describe()}"
    assert cut.text.startswith("answer 1"), f"the first tokens are lost: {cut.describe()}"
    assert not cut.done, f"a cut stream cannot end with a final object: {cut.describe()}"
    assert cut.error is not None, f"the stream should end with an error line: {received}"
    assert '"error"' in received[-1], f"the error line should be the last: {received}"
    assert again.cache == "MISS", (
        f"the cut stream was cached: the same request again got X-Cache {again.cache}"
    )
    assert_own([again], ollama, first=2)


def test_a_reset_mid_body_is_a_502_for_a_whole_answer(start: StartFn) -> None:
    """A `stream: false` client gets nothing before the end: a 502 with Ollama's error
    shape, nothing cached, and the same request again gets its own answer."""

    async def script(seen: Seen, connection: Connection) -> None:
        if seen.number != 1:
            await connection.send(plain_answer(seen))
            return
        parts = body_parts(seen)
        await connection.send(head(seen) + b"transfer-encoding: chunked\r\n\r\n")
        await connection.send(chunked(parts[:1])[: -len(b"0\r\n\r\n")])
        await asyncio.sleep(0.1)
        connection.reset()

    ollama, gateway = start(script)
    prompt = unique("reset-json")
    with client(gateway) as http:
        cut = generate(http, prompt, stream=False)
        again = generate(http, prompt, stream=False)
    assert cut.status == 502, f"a cut answer should be a 502: {cut.describe()}"
    assert cut.error, f"a 502 should say what went wrong: {cut.describe()}"
    assert again.cache == "MISS", (
        f"the cut answer was cached: the same request again got X-Cache {again.cache}"
    )
    assert_own([again], ollama, first=2)


# -- an https upstream ----------------------------------------------------------------


@pytest.fixture
def upstream_ca(tmp_path: Path) -> tuple[trustme.CA, trustme.LeafCert, Path]:
    """A test CA, the upstream's certificate for 127.0.0.1, and the CA's PEM file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = tmp_path / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca, cert, ca_file


def test_an_https_upstream_signed_by_the_configured_ca_answers(
    start: StartFn, upstream_ca: tuple[trustme.CA, trustme.LeafCert, Path]
) -> None:
    _, cert, ca_file = upstream_ca
    ollama, gateway = start(tls=cert, GATEWAY_UPSTREAM_CA_FILE=str(ca_file))
    with client(gateway) as http:
        got = [generate(http, unique("tls"), stream) for stream in (False, True)]
    assert_own(got, ollama)


@pytest.mark.parametrize("ca", ["system-trust", "another-ca"])
def test_an_https_upstream_nobody_trusts_is_a_clear_error(
    start: StartFn,
    upstream_ca: tuple[trustme.CA, trustme.LeafCert, Path],
    tmp_path: Path,
    ca: str,
) -> None:
    """Without the upstream's CA (system trust only, or a CA file of another CA) the
    gateway refuses the upstream: a 502/503 naming the certificate, soon, never a hang
    or a 500."""
    _, cert, _ = upstream_ca
    env = {}
    if ca == "another-ca":
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        env["GATEWAY_UPSTREAM_CA_FILE"] = str(other)
    ollama, gateway = start(tls=cert, **env)
    with client(gateway) as http:
        got = generate(http, unique("untrusted"), stream=False)
    assert got.status in (502, 503), f"an untrusted upstream should be a 502/503: {got.describe()}"
    assert "certificate" in (got.error or "").lower(), (
        f"the error should say the upstream's certificate is the problem: {got.describe()}"
    )
    assert ollama.seen == [], f"a request reached the untrusted upstream: {ollama.story()}"
