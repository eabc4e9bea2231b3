"""With an Ollama answering on --ollama-url, the local stack uses it instead of emulators.

An emulator started by the test plays that "real" Ollama (no model weights here): the
stack must find it by probing, send the balancer's traffic to it, and leave it running
when the stack stops, since the stack did not start it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack_process import LocalStackProcess
from tests.e2e.traffic import RunningStack, generate_body
from tests.support.emulator import Emulator


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = Emulator(tmp_path_factory.mktemp("ollama"), models="llama3.2:1b").start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def stack_on_ollama(
    tmp_path_factory: pytest.TempPathFactory, ollama: Emulator
) -> Iterator[RunningStack]:
    process = LocalStackProcess(
        tmp_path_factory.mktemp("real") / "stack", args=("--free-ports", "--ollama-url", ollama.url)
    ).start()
    try:
        yield RunningStack(process, process.wait_ready())
    finally:
        process.stop()


def test_the_stack_uses_the_ollama_that_answers(
    stack_on_ollama: RunningStack, ollama: Emulator, source_address: str
) -> None:
    stack = stack_on_ollama
    console = stack.process.console()
    assert f"Ollama: using the real Ollama 0.32.15 at {ollama.url}" in console
    assert "EMULATOR" not in console
    # The e2e stack file asks for nomic-embed-text too, which this Ollama lacks.
    assert (
        f"{ollama.url} has not pulled nomic-embed-text: `ollama pull nomic-embed-text`" in console
    )
    assert stack.local["ollama"] == {
        "real": True,
        "url": ollama.url,
        "version": "0.32.15",
        "emulators": [],
        "upstreams": [f"127.0.0.1:{ollama.port}"],
    }
    assert stack.services("ollama") == []
    before = ollama.count("POST /api/generate")
    with stack.client(source_address) as client:
        response = client.post("/api/generate", json=generate_body())
    assert response.status_code == 200, response.text
    assert ollama.count("POST /api/generate") == before + 1


def test_a_second_stack_on_the_same_workdir_is_refused(stack_on_ollama: RunningStack) -> None:
    workdir = stack_on_ollama.process.workdir
    second = LocalStackProcess(workdir, args=("--free-ports", "--emulate"), owns_workdir=False)
    result = second.run()
    assert second.leftovers() == []
    assert result.returncode == 2
    assert f"already runs in {workdir}" in result.stderr
    assert "--workdir DIR" in result.stderr
    # The running stack kept its outputs and still serves.
    assert stack_on_ollama.process.outputs_path.exists()
    with stack_on_ollama.client("127.0.0.240") as client:
        assert client.get("/health").status_code == 200


def test_stopping_the_stack_leaves_the_real_ollama_running(
    stack_on_ollama: RunningStack, ollama: Emulator
) -> None:
    assert stack_on_ollama.process.stop() == 0
    assert stack_on_ollama.process.leftovers() == []
    assert ollama.running
    assert ollama.client.get("/api/version").status_code == 200
