"""The ASGI application: routing like Ollama's gin router, counting, cancellation.

Unknown paths get gin's `404 page not found`, a known path with the wrong method
`405 method not allowed` (Ollama sets HandleMethodNotAllowed), both as plain text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from llm_emulator import (
    control,
    ollama_embed,
    ollama_generate,
    ollama_models,
    openai_generate,
    openai_resources,
)
from llm_emulator.errors import ollama_fail, openai_fail
from llm_emulator.exchange import Exchange, Receive, Scope, Send
from llm_emulator.inference import apply_faults
from llm_emulator.settings import EmulatorSettings
from llm_emulator.state import INFERENCE_PATHS, EmulatorState
from llm_emulator.wire import TEXT

Handler = Callable[[Exchange], Awaitable[None]]

ROUTES: dict[str, dict[str, Handler]] = {
    "/": {"GET": ollama_models.root, "HEAD": ollama_models.root},
    "/api/version": {"GET": ollama_models.version, "HEAD": ollama_models.version},
    "/api/tags": {"GET": ollama_models.tags, "HEAD": ollama_models.tags},
    "/api/ps": {"GET": ollama_models.ps},
    "/api/show": {"POST": ollama_models.show},
    "/api/generate": {"POST": ollama_generate.generate},
    "/api/chat": {"POST": ollama_generate.chat},
    "/api/embed": {"POST": ollama_embed.embed},
    "/api/embeddings": {"POST": ollama_embed.embeddings},
    "/v1/chat/completions": {"POST": openai_generate.chat_completions},
    "/v1/completions": {"POST": openai_generate.completions},
    "/v1/embeddings": {"POST": openai_resources.embeddings},
    "/v1/models": {"GET": openai_resources.models},
}
_MODEL_ROUTE: dict[str, Handler] = {"GET": openai_resources.model}
_NOT_FOUND = b"404 page not found"
_NOT_ALLOWED = b"405 method not allowed"


def _methods_for(path: str) -> dict[str, Handler] | None:
    methods = ROUTES.get(path)
    if methods is None and path.startswith("/v1/models/") and "/" not in path[11:] and path[11:]:
        return _MODEL_ROUTE
    return methods


class EmulatorApp:
    """An ASGI-3 callable; `state` is reachable for in-process tests."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.state = EmulatorState(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        ex = Exchange(scope, receive, send, self.state)
        if ex.path.startswith(control.PREFIX):
            await control.handle(ex)
            return
        state = self.state
        state.arrived(ex.method, ex.path)
        outcome = "completed"
        try:
            methods = _methods_for(ex.path)
            if methods is None:
                await ex.respond(404, _NOT_FOUND, TEXT)
            else:
                handler = methods.get(ex.method)
                if handler is None:
                    allow = ", ".join(methods).encode()
                    await ex.respond(405, _NOT_ALLOWED, TEXT, headers=[(b"allow", allow)])
                else:
                    if ex.method == "POST":
                        await ex.read_body()
                    if ex.path in INFERENCE_PATHS or not await _draws_fault(ex):
                        await handler(ex)
            if ex.cut:
                outcome = "cut"
        except asyncio.CancelledError:
            # Our watcher cancels when the client goes away; anything else (shutdown)
            # is not ours to swallow, but the request still ended unanswered.
            state.finished("cancelled")
            if not ex.disconnected:
                raise
            _uncancel()
            return
        finally:
            ex.close()
        state.finished(outcome)


async def _draws_fault(ex: Exchange) -> bool:
    """Faults on paths other than inference ones (which draw their own), when armed so."""
    if ex.path not in ex.state.faults.paths:
        return False
    reject = openai_fail if ex.path.startswith("/v1/") else ollama_fail
    return await apply_faults(ex, False, reject)


def _uncancel() -> None:
    # The cancel came from our own disconnect watcher and is handled: clear it.
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message: dict[str, Any] = dict(await receive())
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(settings: EmulatorSettings | None = None) -> EmulatorApp:
    """The emulator as an ASGI app (for uvicorn, or in-process with httpx.ASGITransport)."""
    return EmulatorApp(settings or EmulatorSettings())
