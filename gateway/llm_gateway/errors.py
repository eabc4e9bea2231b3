"""Error bodies in the shape the client's API speaks: Ollama's or OpenAI's."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.responses import Response

JSON_TYPE = "application/json; charset=utf-8"

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(Exception):
    """An answer the gateway gives instead of Ollama's; carries status and headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def error_body(status: int, message: str, openai: bool) -> bytes:
    if not openai:
        return orjson.dumps({"error": message})
    kind = _OPENAI_TYPES.get(status, "api_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})


def error_response(
    status: int,
    message: str,
    *,
    openai: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(status, message, openai),
        status_code=status,
        media_type=JSON_TYPE,
        headers=dict(headers or {}),
    )


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/")


class JSONBody(Response):
    """A JSON response serialised with orjson (FastAPI's ORJSONResponse is deprecated)."""

    media_type = JSON_TYPE

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)
