"""`llm-gateway drain`: drain or undrain an Ollama instance through a gateway's admin API.

    llm-gateway drain --instance NAME [--until ready] [--wait] [--timeout S] [--undrain]

The gateway is `--url` (or LLM_GATEWAY_URL; default http://127.0.0.1:8000) and the
admin key `--key` (or, better, since a flag shows in `ps`, LLM_GATEWAY_ADMIN_KEY).
Any replica will do: a drain holds on every replica and worker (shared through Redis).
`--wait` polls GET /admin/instances every half second until the instance has no
request in flight (counted across replicas when they share their counts).

Exit status: 0 done; 1 the gateway refused or could not be reached; 3 `--wait` timed out.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import aiohttp
from yarl import URL

TIMED_OUT = 3
_POLL_SECONDS = 0.5


class AdminError(Exception):
    """The gateway answered with an error, or did not answer."""


class AdminClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, key: str | None) -> None:
        self._session = session
        self._base = URL(url.rstrip("/")) / "admin" / "instances"
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def _call(self, method: str, url: URL, **params: str) -> dict[str, Any]:
        try:
            async with self._session.request(
                method, url, params=params, headers=self._headers
            ) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                if response.status != 200:
                    error = body.get("error") if isinstance(body, dict) else None
                    raise AdminError(f"{response.status}: {error or response.reason}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AdminError(f"cannot reach the gateway at {self._base.origin()}: {exc}") from exc
        if not isinstance(body, dict):
            raise AdminError("the gateway answered something other than a JSON object")
        return body

    async def change(self, name: str, action: str, **params: str) -> dict[str, Any]:
        return await self._call("POST", self._base / name / action, **params)

    async def instance(self, name: str) -> dict[str, Any]:
        listing = await self._call("GET", self._base)
        for entry in listing.get("instances", []):
            if entry.get("name") == name:
                return dict(entry)
        raise AdminError(f"no Ollama instance is named {name!r}")


def _line(entry: dict[str, Any]) -> str:
    return f"{entry.get('name')}: {entry.get('state')} ({entry.get('in_flight')} in flight)"


async def drain(
    url: str,
    key: str | None,
    name: str,
    *,
    undrain: bool = False,
    until: str = "undrain",
    wait: bool = False,
    wait_seconds: float = 600.0,
) -> int:
    client_timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        admin = AdminClient(session, url, key)
        try:
            if undrain:
                answer = await admin.change(name, "undrain")
            else:
                answer = await admin.change(name, "drain", until=until)
            print(_line(answer["instance"]))
            if not answer.get("shared", False):
                print(
                    "llm-gateway drain: the gateway could not write this to Redis: only the "
                    "replica that answered honours it until Redis is back",
                    file=sys.stderr,
                )
            if not wait or undrain:
                return 0
            entry = answer["instance"]
            try:
                async with asyncio.timeout(wait_seconds):
                    # Look again at least once: a replica that placed a request in the
                    # moment before it heard of the drain counts it in flight by then.
                    while True:
                        await asyncio.sleep(_POLL_SECONDS)
                        entry = await admin.instance(name)
                        if not entry.get("in_flight", 0):
                            break
            except TimeoutError:
                print(
                    f"llm-gateway drain: {name} still has {entry.get('in_flight')} "
                    f"request(s) in flight after {wait_seconds:g}s",
                    file=sys.stderr,
                )
                return TIMED_OUT
            print(_line(entry))
            return 0
        except AdminError as exc:
            print(f"llm-gateway drain: {exc}", file=sys.stderr)
            return 1


def default_url() -> str:
    return os.environ.get("LLM_GATEWAY_URL", "http://127.0.0.1:8000")


def default_key() -> str | None:
    return os.environ.get("LLM_GATEWAY_ADMIN_KEY") or None
