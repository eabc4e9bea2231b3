"""Admin endpoints: what is queued and loaded where, usage per key, and draining Ollama
instances, for admin keys only.

An admin key is one with `admin: true` in the keys file. Everyone else gets 403 (a
wrong or missing key 401), so the queue's shape never leaks to ordinary clients. With
authentication disabled the endpoints are open, like everything else.

Draining (`routing/drains.py`) needs model-aware routing: with `GATEWAY_ROUTING=upstream`
the gateway places nothing (nginx picks the instance), so the instance endpoints answer
409.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from llm_gateway.errors import GatewayError, JSONBody, error_response
from llm_gateway.keys import ApiKey
from llm_gateway.redis_guard import Unavailable
from llm_gateway.routing.dispatcher import Dispatcher
from llm_gateway.routing.drains import UNTIL
from llm_gateway.routing.report import instances_report
from llm_gateway.services import Services
from llm_gateway.usage_report import GROUPS, UsageQueryError, parse_since, read_usage

router = APIRouter(prefix="/admin", tags=["admin"])

# An instance's name as GATEWAY_OLLAMA_INSTANCES gives it (`settings.named_instance`).
InstanceName = Annotated[str, Path(min_length=1, max_length=255)]
# Checked by the endpoint (a JSON error that names the choices); the schema says them.
UntilParam = Annotated[str, Query(json_schema_extra={"enum": list(UNTIL)})]


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


@router.get("/usage", summary="Usage per key, model or day (the same JSON as `llm-gateway usage`)")
async def usage(
    request: Request, since: str = "7d", by: str = "key", key: str | None = None
) -> Response:
    try:
        services, _ = _admin(request)
        days = parse_since(since)
        if by not in GROUPS:
            raise UsageQueryError(f"by: {by!r} is not one of {', '.join(GROUPS)}")
    except GatewayError as exc:
        return error_response(exc.status, exc.message, headers=exc.headers)
    except UsageQueryError as exc:
        return error_response(400, str(exc))
    guard = services.guard
    rows = await guard.run("usage", lambda: read_usage(guard.client, days, by, key), force=True)  # type: ignore[arg-type]
    if isinstance(rows, Unavailable):
        return error_response(503, "usage cannot be read right now (Redis unavailable)")
    return JSONBody({"by": by, "since_days": days, "rows": rows})


def _dispatcher(request: Request) -> Dispatcher:
    services, _ = _admin(request)
    if services.dispatcher is None:
        raise GatewayError(
            409,
            "draining needs model-aware routing: with GATEWAY_ROUTING=upstream the nginx "
            "balancer picks the instance (take it out of the balancer instead)",
        )
    return services.dispatcher


def _report(dispatcher: Dispatcher, name: str | None = None) -> dict[str, object]:
    entries = instances_report(dispatcher.instances, dispatcher.drains.all())
    if name is None:
        return {"routing": "model-aware", "instances": entries}
    for entry in entries:
        if entry["name"] == name:
            return dict(entry)
    raise GatewayError(404, f"no Ollama instance is named {name!r} (GET /admin/instances)")


@router.get("/instances", summary="Each Ollama instance: state, drain, in flight, models")
async def instances(request: Request) -> Response:
    try:
        return JSONBody(_report(_dispatcher(request)))
    except GatewayError as exc:
        return error_response(exc.status, exc.message, headers=exc.headers)


@router.post("/instances/{name:path}/drain", summary="Place nothing new on an instance")
async def drain(request: Request, name: InstanceName, until: UntilParam = "undrain") -> Response:
    """`until=undrain` (default): until an explicit undrain; `until=ready`: until the
    instance answers again after having been down (a restart)."""
    try:
        dispatcher = _dispatcher(request)
        _report(dispatcher, name)
        if until not in UNTIL:
            raise GatewayError(400, f"until: {until!r} is not one of {', '.join(UNTIL)}")
    except GatewayError as exc:
        return error_response(exc.status, exc.message, headers=exc.headers)
    shared = await dispatcher.drains.drain(name, until)
    return JSONBody({"instance": _report(dispatcher, name), "shared": shared})


@router.post("/instances/{name:path}/undrain", summary="Place requests on an instance again")
async def undrain(request: Request, name: InstanceName) -> Response:
    try:
        dispatcher = _dispatcher(request)
        _report(dispatcher, name)
    except GatewayError as exc:
        return error_response(exc.status, exc.message, headers=exc.headers)
    shared = await dispatcher.drains.undrain(name)
    return JSONBody({"instance": _report(dispatcher, name), "shared": shared})
