"""The emulator in-process (httpx over ASGI) for scheduler scenarios in simulated time.

Scenarios run at SCALE (simulated seconds per real second): a 10 s load takes 0.1 s.
Times in these tests are simulated seconds unless a name says `real`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
from llm_emulator import EmulatorApp, EmulatorSettings, SchedulerSettings, create_app

SCALE = 100.0
NS = 1_000_000_000
T = TypeVar("T")


def ollama(**changes: Any) -> SchedulerSettings:
    """Ollama's defaults with instant compute and loads, unless the test says otherwise."""
    quiet = {
        "decode_speed": 0.0,
        "prompt_speed": 0.0,
        "load_base": 0.0,
        "load_per_gb": 0.0,
        "unload_time": 0.0,
    }
    return SchedulerSettings.ollama(**{**quiet, **changes})


class Emu:
    def __init__(self, app: EmulatorApp, client: httpx.AsyncClient, scale: float) -> None:
        self.app = app
        self.client = client
        self.scale = scale

    async def sleep(self, simulated: float) -> None:
        await asyncio.sleep(simulated / self.scale)

    def later(self, simulated: float, work: Awaitable[T]) -> asyncio.Task[T]:
        """Start `work` after a simulated delay, as a task."""

        async def run() -> T:
            await self.sleep(simulated)
            return await work

        return asyncio.ensure_future(run())

    async def generate(self, model: str, prompt: str = "x", **fields: Any) -> httpx.Response:
        body = {"model": model, "prompt": prompt, "stream": False, **fields}
        return await self.client.post("/api/generate", json=body)

    async def ok(self, model: str, prompt: str = "x", **fields: Any) -> dict[str, Any]:
        response = await self.generate(model, prompt, **fields)
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()
        return reply

    async def load(self, model: str, **fields: Any) -> None:
        """Ollama's preload: an empty prompt."""
        reply = await self.ok(model, "", **fields)
        assert reply["done_reason"] == "load"

    def view(self) -> dict[str, Any]:
        return self.app.state.scheduler.view()

    def counters(self) -> dict[str, Any]:
        counters: dict[str, Any] = self.view()["counters"]
        return counters

    def loaded(self) -> dict[str, dict[str, Any]]:
        """The scheduler's loaded runners by model."""
        return {r["model"]: r for r in self.view()["loaded"]}

    async def ps(self) -> list[dict[str, Any]]:
        models: list[dict[str, Any]] = (await self.client.get("/api/ps")).json()["models"]
        return models


@asynccontextmanager
async def emulator(
    scheduler: SchedulerSettings | None = None,
    scale: float = SCALE,
    models: tuple[str, ...] = ("llama3.2", "llama3.2:1b", "llama3.1:8b", "all-minilm"),
    **knobs: Any,
) -> AsyncIterator[Emu]:
    settings = EmulatorSettings(
        models=models, scheduler=scheduler or ollama(), time_scale=scale, **knobs
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator", timeout=30) as c:
        yield Emu(app, c, scale)
    app.state.scheduler.close()


def seconds(ns: int) -> float:
    return ns / NS
