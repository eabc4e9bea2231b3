"""The edge certificate: names, reuse, key permissions, and a TLS handshake that trusts it."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from llm_stack.local.binaries import Binaries
from llm_stack.local.tls import ensure_certificate, subject_alt_names

# Every test here starts a process (see tests/support/tiers.py).
pytestmark = pytest.mark.process


def test_subject_alt_names() -> None:
    assert subject_alt_names("localhost") == ["DNS:localhost", "IP:127.0.0.1"]
    assert subject_alt_names("llm.example.com") == [
        "DNS:llm.example.com", "DNS:localhost", "IP:127.0.0.1",
    ]  # fmt: skip
    assert subject_alt_names("10.0.0.5") == ["IP:10.0.0.5", "DNS:localhost", "IP:127.0.0.1"]


def test_certificate_is_made_once_and_remade_for_other_names(
    tmp_path: Path, binaries: Binaries
) -> None:
    cert, key = tmp_path / "tls" / "edge.crt", tmp_path / "tls" / "edge.key"
    assert ensure_certificate(binaries.openssl, "localhost", cert, key) is True
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = cert.read_bytes()
    assert ensure_certificate(binaries.openssl, "localhost", cert, key) is False
    assert cert.read_bytes() == first
    assert ensure_certificate(binaries.openssl, "llm.example.com", cert, key) is True
    text = subprocess.run(
        [binaries.openssl, "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    assert "DNS:llm.example.com" in text
    assert "IP Address:127.0.0.1" in text


@pytest.mark.parametrize("server_name", ["localhost", "llm.example.com"])
def test_a_client_trusting_the_certificate_completes_a_handshake(
    tmp_path: Path, binaries: Binaries, server_name: str
) -> None:
    cert, key = tmp_path / "edge.crt", tmp_path / "edge.key"
    ensure_certificate(binaries.openssl, "llm.example.com", cert, key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client_ctx = ssl.create_default_context(cafile=str(cert))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            tls.sendall(b"x")
        thread.join(timeout=10)
