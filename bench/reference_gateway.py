"""The minimal reference gateway the first design was measured against, for comparison.

FastAPI, a module-level httpx client, forces `stream: false`, key = SHA-256 of
model + prompt + messages + temperature, Redis GET / SETEX, nothing else: no auth,
no limits, no metrics, no streaming. Run: `uvicorn bench.reference_gateway:app`.
Upstream and Redis come from REF_UPSTREAM_URL and REF_REDIS_URL.
"""

from __future__ import annotations

import hashlib
import json
import os

import httpx
import redis.asyncio as redis
from fastapi import FastAPI, Request
from fastapi.responses import Response

UPSTREAM = os.environ.get("REF_UPSTREAM_URL", "http://127.0.0.1:11434")
client = httpx.AsyncClient(base_url=UPSTREAM, timeout=300)
cache = redis.Redis.from_url(os.environ.get("REF_REDIS_URL", "redis://127.0.0.1:6379/0"))
app = FastAPI()


@app.post("/api/generate")
@app.post("/api/chat")
async def proxy(request: Request) -> Response:
    body = await request.json()
    body["stream"] = False
    temperature = (body.get("options") or {}).get("temperature")
    material = json.dumps(
        [body.get("model"), body.get("prompt"), body.get("messages"), temperature]
    )
    key = "ref:" + hashlib.sha256(material.encode()).hexdigest()
    cached = await cache.get(key)
    if cached is not None:
        return Response(cached, media_type="application/json", headers={"X-Cache": "HIT"})
    upstream = await client.post(request.url.path, json=body)
    if upstream.status_code == 200:
        await cache.setex(key, 3600, upstream.content)
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type="application/json",
        headers={"X-Cache": "MISS"},
    )
