"""OpenAPI description of the proxy routes (they are raw ASGI, so FastAPI cannot infer it).

The models document the request bodies the gateway understands; they are never used
to validate on the hot path (Ollama stays the judge of what it accepts). The schema
serves clients and the schemathesis fuzz tests.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from llm_gateway.routes import PROXY_ROUTES


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Body):
    role: str
    content: str | None = None
    images: list[str] | None = None


class GenerateRequest(_Body):
    model: str
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    images: list[str] | None = None
    format: str | dict[str, Any] | None = None
    raw: bool | None = None
    think: bool | str | None = None
    stream: bool | None = Field(None, description="Default true: NDJSON chunks.")
    keep_alive: str | int | None = None
    options: dict[str, Any] | None = None


class ChatRequest(_Body):
    model: str
    messages: list[Message] | None = None
    tools: list[dict[str, Any]] | None = None
    format: str | dict[str, Any] | None = None
    think: bool | str | None = None
    stream: bool | None = Field(None, description="Default true: NDJSON chunks.")
    keep_alive: str | int | None = None
    options: dict[str, Any] | None = None


class EmbedRequest(_Body):
    model: str
    input: str | list[str]
    truncate: bool | None = None
    dimensions: int | None = None
    keep_alive: str | int | None = None
    options: dict[str, Any] | None = None


class EmbeddingsRequest(_Body):
    model: str
    prompt: str
    options: dict[str, Any] | None = None


class ShowRequest(_Body):
    model: str
    verbose: bool | None = None


class OpenAIMessage(_Body):
    role: str
    content: str | list[dict[str, Any]] | None = None


class OpenAIChatRequest(_Body):
    model: str
    messages: list[OpenAIMessage]
    stream: bool | None = Field(None, description="Default false; true gives SSE.")
    stream_options: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None


class OpenAICompletionRequest(_Body):
    model: str
    prompt: str
    suffix: str | None = None
    stream: bool | None = None
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int | None = None


class OpenAIEmbeddingRequest(_Body):
    model: str
    input: str | list[str]
    encoding_format: str | None = None
    dimensions: int | None = None


_BODIES: dict[str, type[BaseModel]] = {
    "/api/generate": GenerateRequest,
    "/api/chat": ChatRequest,
    "/api/embed": EmbedRequest,
    "/api/embeddings": EmbeddingsRequest,
    "/api/show": ShowRequest,
    "/v1/chat/completions": OpenAIChatRequest,
    "/v1/completions": OpenAICompletionRequest,
    "/v1/embeddings": OpenAIEmbeddingRequest,
}

_ERROR = {"type": "object", "properties": {"error": {}}, "required": ["error"]}


def _operation(path: str, method: str, endpoint: str) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "What Ollama answered (plus X-Request-ID / X-Cache / Age)."},
        "401": {"description": "Missing or unknown API key.", "content": _json(_ERROR)},
        "429": {"description": "Over the key's limits.", "content": _json(_ERROR)},
    }
    operation: dict[str, Any] = {
        "operationId": f"{endpoint}_{method}",
        "summary": f"Proxied to Ollama: {method.upper()} {path}",
        "tags": ["openai" if path.startswith("/v1/") else "ollama"],
        "security": [{"bearer": []}, {"apiKey": []}],
        "responses": responses,
    }
    body = _BODIES.get(path)
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": _json({"$ref": f"#/components/schemas/{body.__name__}"}),
        }
        for status, text in (
            ("400", "Malformed body or missing model."),
            ("403", "The key may not use this model."),
            ("413", "Body over the configured limit."),
        ):
            responses[status] = {"description": text, "content": _json(_ERROR)}
    if "{model}" in path:
        operation["parameters"] = [
            {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
    return operation


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def install_proxy_schema(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        paths = schema.setdefault("paths", {})
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for model in _BODIES.values():
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in model_schema.pop("$defs", {}).items():
                schemas[name] = definition
            schemas[model.__name__] = model_schema
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        for route in PROXY_ROUTES:
            path = route.path.replace("{model:path}", "{model}")
            item = paths.setdefault(path, {})
            for method in route.methods:
                if method != "HEAD":
                    item[method.lower()] = _operation(path, method.lower(), route.endpoint)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
