"""Every response carries X-Request-ID: the client's (when safe to echo) or a new one."""

from __future__ import annotations

from llm_gateway.asgi_io import Message, Receive, Scope, Send
from llm_gateway.observe import request_id_from

SCOPE_KEY = "llm.request_id"
_HEADER = b"x-request-id"


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: that would buffer streams and cost per chunk)."""

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        given = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                given = value.decode("latin-1")
        request_id = request_id_from(given)
        scope[SCOPE_KEY] = request_id
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name == _HEADER for name, _ in headers):
                    headers.append((_HEADER, encoded))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)  # type: ignore[operator]
