"""Admin endpoints: what is queued and loaded where (and, later, usage), for admin keys only.

An admin key is one with `admin: true` in the keys file. Everyone else gets 403 (a
wrong or missing key 401), so the queue's shape never leaks to ordinary clients. With
authentication disabled the endpoints are open, like everything else.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llm_gateway.errors import GatewayError, JSONBody, error_response
from llm_gateway.keys import ApiKey
from llm_gateway.services import Services

router = APIRouter(prefix="/admin", tags=["admin"])


def _admin(request: Request) -> tuple[Services, ApiKey | None]:
    services: Services = request.app.state.services
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
    api_key = services.proxy.gatekeeper.authenticate(headers)
    if api_key is not None and not api_key.admin:
        raise GatewayError(403, "this API key may not read admin endpoints")
    return services, api_key


@router.get("/queue", summary="Queues and instances: depth, waits, models loaded, in flight")
async def queue(request: Request) -> Response:
    try:
        services, _ = _admin(request)
    except GatewayError as exc:
        return error_response(exc.status, exc.message, headers=exc.headers)
    if services.dispatcher is None:
        return JSONBody({"routing": "upstream", "upstream": services.settings.upstream_url})
    return JSONBody(services.dispatcher.snapshot())
