"""The emulator as a process (CLI, signals) and as an in-process ASGI app."""

from __future__ import annotations

import signal
import sys
import time

import httpx
import orjson
import pytest
from llm_emulator import EmulatorSettings, create_app

from tests.support.emulator import Emulator, EmulatorFactory
from tests.support.ports import free_port, port_is_open
from tests.support.processes import ManagedProcess


@pytest.mark.process
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


@pytest.mark.process
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


@pytest.mark.process
def test_a_benchmark_instance_from_flags(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One simulated 24 GB Ollama as a multi-instance benchmark starts it: two ~16 GB
    models that cannot share it, a small one that fits beside either, 50x real time."""
    port = free_port()
    argv = [sys.executable, "-m", "llm_emulator", "--host", "127.0.0.1", "--port", str(port),
            "--ollama-defaults", "--time-scale", "50", "--context-length", "4096",
            "--models", "gemma2:27b,mistral-small:24b,llama3.2"]  # fmt: skip
    proc = ManagedProcess(argv, port, tmp_path / "emulator.log").start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            body = {"model": "gemma2:27b", "prompt": "x", "options": {"num_predict": 3}}
            started = time.monotonic()
            with client.stream("POST", "/api/generate", json=body) as response:
                lines = response.iter_lines()
                next(lines)
                first_chunk_after = (time.monotonic() - started) * 50
                final = orjson.loads(list(lines)[-1])
            # Loading 15.6 GB at 1 s + 0.6 s/GB delays the first token as much.
            assert first_chunk_after >= 10.3
            assert final["load_duration"] >= 10.3e9
            assert final["eval_count"] == 3
            client.post("/api/generate", json={"model": "llama3.2", "prompt": ""})
            client.post("/api/generate", json={"model": "mistral-small:24b", "prompt": ""})
            ps = client.get("/api/ps").json()["models"]
            assert {m["name"] for m in ps} == {"mistral-small:24b", "llama3.2:latest"}
            view = client.get("/_emulator/scheduler").json()
    finally:
        proc.stop()
    assert view["counters"]["evictions"] == {"gemma2:27b": 1}
    assert view["settings"]["vram_gib"] == 24
    assert view["settings"]["time_scale"] == 50
