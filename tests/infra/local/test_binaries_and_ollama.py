"""Missing binaries and the real-or-emulated Ollama decision."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from llm_stack.local.binaries import find_binaries, find_binary
from llm_stack.local.errors import LocalStackError
from llm_stack.local.ollama import host_port, missing_models, probe_ollama

from tests.support.emulator import Emulator
from tests.support.ports import free_port


def test_missing_binaries_are_all_named_with_their_packages(tmp_path: Path) -> None:
    with pytest.raises(LocalStackError) as raised:
        find_binaries(path=str(tmp_path))
    message = str(raised.value)
    for binary in ("redis-server", "prometheus", "prometheus-nginx-exporter", "openssl"):
        assert f"{binary} (Debian package " in message
    assert "nginx (Debian" not in message  # found in /usr/sbin, off PATH
    assert raised.value.fix.startswith("sudo apt-get install ")


def test_nginx_is_found_in_sbin_without_it_on_path(tmp_path: Path) -> None:
    assert find_binary("nginx", path=str(tmp_path)) is not None


@pytest.mark.process
def test_probe_finds_an_ollama_and_its_missing_models(tmp_path: Path) -> None:
    emulator = Emulator(tmp_path, models="llama3.2:1b").start()
    try:
        real = probe_ollama(emulator.url)
        assert real is not None
        assert real.version == "0.32.15"
        assert real.address == f"127.0.0.1:{emulator.port}"
        assert missing_models(real, ["llama3.2:1b", "qwen2.5:7b"]) == ["qwen2.5:7b"]
    finally:
        emulator.stop()


def test_probe_gives_up_quickly_on_a_closed_port() -> None:
    started = time.monotonic()
    assert probe_ollama(f"http://127.0.0.1:{free_port()}") is None
    assert time.monotonic() - started < 2


def test_probe_gives_up_within_about_a_second_on_a_silent_server() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
        thread.start()
        started = time.monotonic()
        assert probe_ollama(f"http://127.0.0.1:{server.getsockname()[1]}") is None
        assert time.monotonic() - started < 3
        for conn in accepted:
            conn.close()


def test_a_server_that_is_not_ollama_is_not_taken_for_one(tmp_path: Path) -> None:
    # Something answering HTTP, but not with Ollama's /api/version body, is not Ollama.
    with socket.create_server(("127.0.0.1", 0)) as server:

        def answer() -> None:
            conn, _ = server.accept()
            conn.recv(4096)
            conn.sendall(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        assert probe_ollama(f"http://127.0.0.1:{server.getsockname()[1]}") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:11434", "127.0.0.1:11434"),
        ("http://ollama.lan:8080/", "ollama.lan:8080"),
        ("http://[::1]:11434", "[::1]:11434"),
    ],
)
def test_host_port(url: str, expected: str) -> None:
    assert host_port(url) == expected


@pytest.mark.parametrize("url", ["https://x:1", "127.0.0.1:11434", "http://x:1/api"])
def test_bad_ollama_urls_are_refused(url: str) -> None:
    with pytest.raises(LocalStackError, match="--ollama-url"):
        host_port(url)
