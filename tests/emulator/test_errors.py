"""Every error case answers with Ollama's exact status and body."""

from __future__ import annotations

import httpx
import pytest

JSON = "application/json; charset=utf-8"
USER = [{"role": "user", "content": "x"}]


PULL = 'model "nope" not found, try pulling it first'
RAW = {"model": "llama3.2", "prompt": "x", "raw": True, "system": "s"}
RAW_ERROR = "raw mode does not support template, system, or context"
EMBED_MODEL = "all-minilm"


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/generate", {"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
        ("/api/chat", {"model": "nope", "messages": USER}, 404, "model 'nope' not found"),
        ("/api/show", {"model": "nope"}, 404, "model 'nope' not found"),
        ("/api/embed", {"model": "nope", "input": "x"}, 404, PULL),
        ("/api/embeddings", {"model": "nope", "prompt": "x"}, 404, PULL),
        ("/api/chat", {"messages": USER}, 400, "model is required"),
        ("/api/show", {}, 400, "model is required"),
        ("/api/embeddings", {"prompt": "x"}, 400, "model is required"),
        ("/api/generate", {"prompt": "x"}, 404, "model '' not found"),
        ("/api/generate", {"model": EMBED_MODEL, "prompt": "x"}, 400,
         '"all-minilm" does not support generate'),
        ("/api/chat", {"model": EMBED_MODEL, "messages": USER}, 400,
         '"all-minilm" does not support chat'),
        ("/api/embed", {"model": EMBED_MODEL, "input": [1]}, 400, "invalid input type"),
        ("/api/generate", RAW, 400, RAW_ERROR),
        ("/api/generate", {"model": "llama3.2", "prompt": "x", "keep_alive": "soon"}, 400,
         'time: invalid duration "soon"'),
    ],
)  # fmt: skip
def test_ollama_errors(
    http: httpx.Client, path: str, body: dict[str, object], status: int, error: str
) -> None:
    response = http.post(path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == JSON
    assert response.json() == {"error": error}


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat", "/api/embed", "/api/show"])
def test_empty_body(http: httpx.Client, path: str) -> None:
    response = http.post(path, content=b"")
    assert response.status_code == 400
    assert response.content == b'{"error":"missing request body"}'


@pytest.mark.parametrize("body", [b"{", b"{nope}", b'{"model": "llama3.2",', b"[1, 2"])
def test_malformed_json(http: httpx.Client, body: bytes) -> None:
    response = http.post("/api/generate", content=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == JSON
    assert isinstance(response.json()["error"], str)


def test_wrong_json_types(http: httpx.Client) -> None:
    not_object = http.post("/api/chat", content=b"[]")
    assert not_object.status_code == 400
    assert "cannot unmarshal array" in not_object.json()["error"]
    bad_field = http.post("/api/generate", json={"model": "llama3.2", "prompt": 5})
    assert bad_field.status_code == 400
    expected = (
        "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string"
    )
    assert bad_field.json() == {"error": expected}


def test_unknown_path_and_wrong_method(http: httpx.Client) -> None:
    missing = http.get("/api/nothing")
    assert missing.status_code == 404
    assert missing.text == "404 page not found"
    assert missing.headers["content-type"] == "text/plain; charset=utf-8"
    wrong = http.get("/api/generate")
    assert wrong.status_code == 405
    assert wrong.text == "405 method not allowed"
    assert http.delete("/api/tags").status_code == 405
    assert http.head("/api/ps").status_code == 405


def openai_error(message: str, kind: str = "not_found_error") -> dict[str, object]:
    return {"message": message, "type": kind, "param": None, "code": None}


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/v1/chat/completions", {"model": "nope", "messages": USER}, 404,
         openai_error("model 'nope' not found")),
        ("/v1/completions", {"model": "nope", "prompt": "x"}, 404,
         openai_error("model 'nope' not found")),
        ("/v1/embeddings", {"model": "nope", "input": "x"}, 404, openai_error(PULL)),
        ("/v1/chat/completions", {"messages": USER}, 400,
         openai_error("model is required", "invalid_request_error")),
    ],
)  # fmt: skip
def test_openai_errors(
    http: httpx.Client, path: str, body: dict[str, object], status: int, error: dict[str, object]
) -> None:
    response = http.post(path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": error}


@pytest.mark.parametrize(
    ("path", "content", "message"),
    [
        ("/v1/chat/completions", b"", "EOF"),
        ("/v1/chat/completions", b'{"model": "llama3.2", "messages": []}',
         "[] is too short - 'messages'"),
        ("/v1/embeddings", b'{"model": "all-minilm", "input": []}', "invalid input"),
        ("/v1/embeddings", b'{"model": "all-minilm", "input": "x", "encoding_format": "hex"}',
         "Invalid value for 'encoding_format' = hex. Supported values: ['float', 'base64']."),
    ],
)  # fmt: skip
def test_openai_request_errors(http: httpx.Client, path: str, content: bytes, message: str) -> None:
    response = http.post(path, content=content)
    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }


def test_openai_model_retrieve_unknown(http: httpx.Client) -> None:
    response = http.get("/v1/models/nope")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "model 'nope' not found"
