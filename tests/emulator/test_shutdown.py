"""The emulator stops like Ollama: SIGTERM closes every connection at once.

Ollama's `server/routes.go` (v0.32.15) calls `http.Server.Close()` on SIGINT/SIGTERM,
not `Shutdown()`: no grace for requests in flight. A stream in flight is cut (the
client sees the body end without its final chunk), an idle keep-alive connection is
closed, and the process exits 0 without waiting for either.
"""

from __future__ import annotations

import signal
import socket
import sys

import httpx
import orjson
import pytest

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process

# Long enough that the stream cannot end by itself during the test (1,000 tokens, 50 ms
# apart: 50 s), so a clean end could only come from a graceful shutdown.
SLOW = ["--tokens", "1000", "--token-delay", "0.05"]


def _start(tmp_path, extra: list[str]) -> tuple[ManagedProcess, int]:  # type: ignore[no-untyped-def]
    port = free_port()
    argv = [sys.executable, "-m", "llm_emulator", "--host", "127.0.0.1", "--port", str(port)]
    return ManagedProcess(argv + extra, port, tmp_path / "emulator.log").start(), port


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_cuts_a_stream_in_flight(tmp_path, sig: int) -> None:  # type: ignore[no-untyped-def]
    proc, port = _start(tmp_path, SLOW)
    received: list[dict[str, object]] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            body = {"model": "llama3.2", "prompt": "tell me a long story"}
            with client.stream("POST", "/api/generate", json=body) as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                received.append(orjson.loads(next(lines)))
                proc.signal(sig)
                with pytest.raises(httpx.RemoteProtocolError):
                    received.extend(orjson.loads(line) for line in lines)
        assert proc.proc is not None
        assert proc.proc.wait(timeout=30) == 0
    finally:
        proc.stop()
    assert received, "the stream never started"
    assert all(chunk["done"] is False for chunk in received)
    # Far fewer than the 1,000 tokens asked for: the cut came at the signal.
    assert len(received) < 1000
    assert "Traceback" not in proc.log_text()


def _read_answer(conn: socket.socket) -> bytes:
    """One whole answer (head and Content-Length body): it may arrive in several reads."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed mid-answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed mid-body: {data!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_signal_closes_idle_keep_alive_connections(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc, port = _start(tmp_path, [])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
            first = _read_answer(conn)
            assert first.startswith(b"HTTP/1.1 200")
            proc.signal(signal.SIGTERM)
            # The server closes the connection: EOF (or a reset), never another answer.
            try:
                rest = conn.recv(65536)
            except ConnectionResetError:
                rest = b""
            assert rest == b""
        assert proc.proc is not None
        assert proc.proc.wait(timeout=30) == 0
    finally:
        proc.stop()
