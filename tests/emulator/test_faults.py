"""Fault injection: each armed fault hits the next requests in arrival order."""

from __future__ import annotations

import httpx
import ollama
import orjson
import pytest

from tests.emulator.framing import ndjson, sse, wait_until
from tests.support.emulator import Emulator

GEN = {"model": "llama3.2", "prompt": "x"}


def test_fail_next_with_status(emulator: Emulator, http: httpx.Client) -> None:
    emulator.faults(fail_next=2, fail_status=503)
    for _ in range(2):
        response = http.post("/api/generate", json=GEN)
        assert response.status_code == 503
        assert response.json() == {
            "error": "server busy, please try again.  maximum pending requests exceeded"
        }
    assert http.post("/api/generate", json=GEN).status_code == 200


def test_fail_default_is_500_and_openai_shaped_on_v1(
    emulator: Emulator, http: httpx.Client
) -> None:
    emulator.faults(fail_next=2)
    native = http.post(
        "/api/chat", json={"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}
    )
    assert native.status_code == 500
    assert set(native.json()) == {"error"}
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}
    v1 = http.post("/v1/chat/completions", json=body)
    assert v1.status_code == 500
    assert v1.json()["error"]["type"] == "api_error"


def test_faults_skip_non_inference_paths_unless_asked(
    emulator: Emulator, http: httpx.Client
) -> None:
    emulator.faults(fail_next=1)
    assert http.get("/api/tags").status_code == 200
    assert http.get("/").status_code == 200
    assert http.post("/api/generate", json=GEN).status_code == 500
    emulator.faults(fail_next=1, fail_status=502, paths=["/api/tags"])
    assert http.post("/api/generate", json=GEN).status_code == 200
    assert http.get("/api/tags").status_code == 502


def test_cut_mid_stream(emulator: Emulator, http: httpx.Client) -> None:
    emulator.faults(cut_next=1, cut_after=2)
    # A non-streamed request does not draw a stream fault.
    assert http.post("/api/generate", json={**GEN, "stream": False}).status_code == 200
    lines: list[dict[str, object]] = []

    def read_stream() -> None:
        with http.stream("POST", "/api/generate", json=GEN) as response:
            assert response.status_code == 200
            lines.extend(orjson.loads(line) for line in response.iter_lines())

    with pytest.raises(httpx.RemoteProtocolError):
        read_stream()
    assert len(lines) == 2
    assert not any(line["done"] for line in lines)
    wait_until(lambda: emulator.stats()["cut"] == 1)
    assert http.post("/api/generate", json=GEN).status_code == 200


def test_cut_sse_stream(emulator: Emulator, http: httpx.Client) -> None:
    emulator.faults(cut_next=1, cut_after=1)
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        response.read()


def test_error_mid_stream(emulator: Emulator, http: httpx.Client) -> None:
    emulator.faults(error_next=1, error_after=3, error_message="llama runner crashed")
    response = http.post("/api/generate", json=GEN)
    assert response.status_code == 200
    chunks = ndjson(response.content)
    assert len(chunks) == 4
    assert chunks[-1] == {"error": "llama runner crashed"}
    assert all("response" in c for c in chunks[:3])
    assert len(ndjson(http.post("/api/generate", json=GEN).content)) == 9


def test_error_mid_stream_reaches_the_ollama_client(emulator: Emulator) -> None:
    emulator.faults(error_next=1, error_after=1)
    client = ollama.Client(host=emulator.url)
    with pytest.raises(ollama.ResponseError, match="emulated fault"):
        for _ in client.chat(
            model="llama3.2", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            pass


def test_error_mid_sse_stream(emulator: Emulator, http: httpx.Client) -> None:
    emulator.faults(error_next=1, error_after=2)
    body = {"model": "llama3.2", "prompt": "x", "stream": True}
    events = sse(http.post("/v1/completions", json=body).content)
    assert len(events) == 3
    assert b"[DONE]" not in events
    assert orjson.loads(events[-1])["error"]["message"].endswith("emulated fault")


def test_hang_until_client_leaves(emulator: Emulator, http: httpx.Client) -> None:
    emulator.faults(hang_next=1)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/api/generate", json=GEN, timeout=0.3)
    wait_until(lambda: emulator.stats()["cancelled"] == 1 and emulator.stats()["active"] == 0)
    assert http.post("/api/generate", json={**GEN, "stream": False}, timeout=5).status_code == 200


def test_hang_everything_until_reset(emulator: Emulator, http: httpx.Client) -> None:
    emulator.faults(hang_next=-1)
    for _ in range(2):
        with pytest.raises(httpx.ReadTimeout):
            http.post("/api/chat", json={"model": "llama3.2", "messages": []}, timeout=0.2)
    assert emulator.faults()["hang_next"] == -1
    emulator.reset()
    assert http.post("/api/generate", json=GEN, timeout=5).status_code == 200


def test_one_fault_per_request_in_arrival_order(emulator: Emulator, http: httpx.Client) -> None:
    emulator.faults(fail_next=1, error_next=1, error_after=0)
    assert http.post("/api/generate", json=GEN).status_code == 500
    errored = ndjson(http.post("/api/generate", json=GEN).content)
    assert errored == [
        {"error": "an error was encountered while running the model: emulated fault"}
    ]
    assert http.post("/api/generate", json=GEN).status_code == 200


def test_bad_fault_requests_are_refused(emulator: Emulator) -> None:
    for bad in ({"fail_next": -2}, {"fail_status": 200}, {"nonsense": 1}, {"hang_next": -5}):
        with pytest.raises(RuntimeError, match="400"):
            emulator.faults(**bad)
