"""The ASGI application: ops routes (FastAPI) and proxy routes (raw ASGI), composed here."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Route

from llm_gateway import __version__
from llm_gateway.admin import router as admin_router
from llm_gateway.asgi_io import Receive, Reply, Scope, Send
from llm_gateway.errors import error_body, error_response, is_openai_path
from llm_gateway.keys import KeyRing
from llm_gateway.observe import AccessLog
from llm_gateway.openapi import install_proxy_schema
from llm_gateway.ops import router as ops_router
from llm_gateway.proxy import ProxyEndpoint
from llm_gateway.request_id import RequestIdMiddleware
from llm_gateway.routes import PROXY_ROUTES
from llm_gateway.services import Services
from llm_gateway.settings import Settings
from llm_gateway.tracing import Tracing

log = logging.getLogger("llm_gateway")


class AuthConfigError(RuntimeError):
    """The gateway would run without keys and nobody said that is intended."""


def keyring_for(settings: Settings) -> KeyRing | None:
    """The keys to enforce, or None when auth is (explicitly) disabled."""
    if settings.auth_disabled:
        return None
    if not settings.has_keys:
        raise AuthConfigError(
            "no API keys configured: set GATEWAY_API_KEYS (sha256 digests) or "
            "GATEWAY_API_KEYS_FILE; mint a key with `llm-gateway keys new --name NAME`. "
            "To run without authentication, set GATEWAY_AUTH_DISABLED=true explicitly."
        )
    keyring = KeyRing.from_settings(settings)
    if len(keyring) == 0:
        raise AuthConfigError("the configured API key sources hold no keys")
    return keyring


class GatewayApp:
    """The ASGI entry: proxy paths go straight to their endpoint, the rest to FastAPI.

    The proxy routes are also registered in FastAPI (405s, unknown methods, the
    OpenAPI schema, `/v1/models/{model}`), but the hot exact-path requests skip
    Starlette's middleware stack and router: they are most of the traffic.
    """

    def __init__(self, api: FastAPI, endpoints: dict[str, ProxyEndpoint]) -> None:
        self.api = api
        self.state = api.state
        self._endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self._endpoints.get(scope["path"])
            if endpoint is not None and scope["method"] in endpoint.route.methods:
                await endpoint(scope, receive, send)
                return
            # Only here, off the exact-path fast lane: no exact path is unsafe.
            if unsafe_path(scope):
                body = error_body(400, "invalid request path", is_openai_path(scope["path"]))
                await Reply(400, {}, body).send_to(send)
                return
        await self.api(scope, receive, send)


def unsafe_path(scope: Scope) -> bool:
    """A path that could mean another one once a server resolves it: dot segments, empty
    segments, a backslash, or an encoded slash (which a server may decode first)."""
    path: str = scope["path"]
    raw: bytes = scope.get("raw_path") or b""
    return (
        "//" in path
        or "/./" in path
        or "/../" in path
        or path.endswith(("/.", "/.."))
        or "\\" in path
        or b"%2f" in raw.lower()
    )


def create_app(
    settings: Settings | None = None,
    access_log: AccessLog | None = None,
    tracing: Tracing | None = None,
) -> GatewayApp:
    """The gateway; `tracing` replaces the OTLP exporter GATEWAY_TRACING would start."""
    settings = settings or Settings()
    keyring = keyring_for(settings)
    log_sink = access_log or AccessLog(settings.access_log)
    services = Services.build(settings, keyring, log_sink, tracing)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="llm-gateway",
        version=__version__,
        summary="Ollama behind auth, per-key limits, a Redis cache and metrics.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # Never a redirect: behind a TLS edge, Starlette's would point at http://<Host>
        # (a client's Host at that), and a 307 makes clients resend key and prompt.
        redirect_slashes=False,
    )
    app.state.services = services
    app.include_router(ops_router)
    app.include_router(admin_router)
    endpoints: dict[str, ProxyEndpoint] = {}
    for route in PROXY_ROUTES:
        endpoint = ProxyEndpoint(route, services.proxy)
        app.router.routes.append(Route(route.path, endpoint, methods=list(route.methods)))
        if "{" not in route.path:
            endpoints[route.path] = endpoint
    install_proxy_schema(app)
    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = {404: f"no such endpoint: {request.url.path}", 405: "method not allowed"}.get(
            exc.status_code, str(exc.detail)
        )
        return error_response(
            exc.status_code, message, openai=is_openai_path(request.url.path),
            headers=dict(exc.headers or {}),
        )  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return error_response(400, "invalid request", openai=is_openai_path(request.url.path))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error", openai=is_openai_path(request.url.path))

    return GatewayApp(app, endpoints)
