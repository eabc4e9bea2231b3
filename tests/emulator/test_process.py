"""The emulator as a process (CLI, signals) and as an in-process ASGI app."""

from __future__ import annotations

import signal
import sys
import time

import httpx
import pytest
from llm_emulator import EmulatorSettings, create_app

from tests.support.emulator import Emulator, EmulatorFactory
from tests.support.ports import free_port, port_is_open
from tests.support.processes import ManagedProcess


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_announces_and_exits_cleanly(tmp_path, sig: int) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    argv = [sys.executable, "-m", "llm_emulator", "--host", "127.0.0.1", "--port", str(port)]
    proc = ManagedProcess(argv, port, tmp_path / "emulator.log").start()
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "Ollama is running"
        proc.signal(sig)
        assert proc.proc is not None
        assert proc.proc.wait(timeout=10) == 0
    finally:
        proc.stop()
    lines = proc.log_text().splitlines()
    assert f"ollama emulator listening on http://127.0.0.1:{port}" in lines
    assert "Traceback" not in proc.log_text()


def test_stop_exits_zero_even_with_a_hanging_request(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    emulator.faults(hang_next=-1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            emulator.url + "/api/generate", json={"model": "llama3.2", "prompt": "x"}, timeout=0.2
        )
    started = time.monotonic()
    assert emulator.stop() == 0
    assert time.monotonic() - started < 8
    assert not port_is_open(emulator.port)


def test_bad_arguments_fail(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "llm_emulator", "--tokens", "-3"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert b"tokens must be >= 0" in result.stderr


def test_factory_knobs_and_models(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(tokens=2, models=["tinyllama", "all-minilm"])
    names = [m["name"] for m in httpx.get(emulator.url + "/api/tags").json()["models"]]
    assert names == ["tinyllama:latest", "all-minilm:latest"]
    reply = httpx.post(
        emulator.url + "/api/generate", json={"model": "tinyllama", "prompt": "x", "stream": False}
    ).json()
    assert reply["eval_count"] == 2
    other = emulator_factory()
    assert other.port != emulator.port
    other.configure(tokens=5)
    emulator.reset()
    assert emulator.stats()["total"] == 0
    assert other.configure()["tokens"] == 5


def test_session_emulator_comes_back_after_a_kill(emulator: Emulator) -> None:
    emulator.kill()
    assert not emulator.running
    emulator.start()
    assert httpx.get(emulator.url + "/api/version").json() == {"version": "0.32.15"}


async def test_in_process_app() -> None:
    app = create_app(EmulatorSettings(tokens=3, models=("llama3.2",)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        reply = await client.post(
            "/api/generate", json={"model": "llama3.2", "prompt": "x", "stream": False}
        )
        assert reply.json()["eval_count"] == 3
        assert (await client.get("/_emulator/stats")).json()["completed"] == 1
    assert app.state.counters.total == 1
