"""Operational endpoints: /health (liveness), /ready (Redis and upstream), /metrics.

/metrics and /ready carry no key check: they are for the internal network only.
The nginx edge answers 404 for them, and the gateway publishes no port, so only
Prometheus and the container healthcheck ever reach them (see docs/security.md).
"""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from llm_gateway.errors import JSONBody
from llm_gateway.services import Services
from llm_gateway.upstream import UpstreamFailure

router = APIRouter(tags=["operations"])


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.get("/health", summary="Liveness: the process answers (checks nothing else)")
async def health() -> JSONBody:
    return JSONBody({"status": "ok"})


@router.get("/ready", summary="Readiness: Redis and the upstream (503 when Ollama is unreachable)")
async def ready(request: Request) -> JSONBody:
    services = _services(request)
    redis_ok = await services.guard.ping()
    if services.cache_shares_state:
        cache_redis = "shared"  # the cache is in the state Redis (GATEWAY_REDIS_URL)
    else:
        cache_redis = "ok" if await services.cache_guard.ping() else "unavailable"
    upstream = "ok"
    try:
        # Context-managed: the connection goes back to the pool (or is dropped) even
        # when reading the body fails or times out.
        async with (
            asyncio.timeout(2.0),
            services.any_upstream().request("GET", "/api/version", None, {}) as response,
        ):
            await response.read()
        if response.status != 200:
            upstream = f"status {response.status}"
    except (UpstreamFailure, TimeoutError) as exc:
        upstream = str(exc) or "timed out"
    ok = upstream == "ok"
    return JSONBody(
        {
            "status": "ready" if ok else "not ready",
            "upstream": upstream,
            # Redis is a helper: without it requests are served uncached (X-Cache: BYPASS).
            "redis": "ok" if redis_ok else "unavailable",
            # The cache's own Redis (GATEWAY_CACHE_REDIS_URL), or "shared" without one.
            "cache_redis": cache_redis,
        },
        status_code=200 if ok else 503,
    )


@router.get("/metrics", summary="Prometheus metrics (text exposition format)")
async def metrics(request: Request) -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        payload = generate_latest(registry)
    else:
        payload = generate_latest(_services(request).metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
