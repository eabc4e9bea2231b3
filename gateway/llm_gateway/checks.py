"""Who is asking and is the body usable: API key, JSON body, model name, message count."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.errors import GatewayError
from llm_gateway.keys import ApiKey, KeyRing, plausible_key, presented_key, utcnow
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routes import ProxyRoute

_MAX_MODEL_NAME = 256
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Gatekeeper:
    def __init__(self, keyring: KeyRing | None, metrics: GatewayMetrics, max_messages: int):
        self._keyring = keyring
        self._metrics = metrics
        self._max_messages = max_messages

    def authenticate(self, headers: dict[str, str]) -> ApiKey | None:
        """The request's key (None when auth is disabled), or a 401."""
        if self._keyring is None:
            return None
        presented = presented_key(headers.get("authorization"), headers.get("x-api-key"))
        if presented is None:
            self._metrics.auth_failures.labels("missing", "-").inc()
            raise GatewayError(
                401, "missing API key: send 'Authorization: Bearer <key>'", _CHALLENGE
            )
        api_key = self._keyring.lookup(presented) if plausible_key(presented) else None
        if api_key is None:
            self._metrics.auth_failures.labels("unknown", "-").inc()
            raise GatewayError(401, "invalid API key", _CHALLENGE)
        if api_key.expires is not None and api_key.expired(utcnow()):
            self._metrics.auth_failures.labels("expired", api_key.name).inc()
            raise GatewayError(401, "API key expired", _CHALLENGE)
        return api_key

    def request_body(self, route: ProxyRoute, body: bytes) -> tuple[dict[str, Any], str]:
        """The parsed body and its model, or a 400."""
        data = parse_json_object(body)
        model = model_of(route, data)
        messages = data.get("messages")
        if isinstance(messages, list) and len(messages) > self._max_messages:
            raise GatewayError(
                400, f"too many messages: {len(messages)} (limit {self._max_messages})"
            )
        return data, model

    def check_model(self, api_key: ApiKey | None, model: str) -> None:
        if api_key is not None and not api_key.allows(model):
            self._metrics.auth_failures.labels("model_forbidden", api_key.name).inc()
            raise GatewayError(403, f"this API key may not use model '{model}'")


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise GatewayError(400, "missing request body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"invalid JSON in request body: {exc.msg}") from None
    if not isinstance(data, dict):
        raise GatewayError(400, "request body must be a JSON object")
    return data


def model_of(route: ProxyRoute, data: dict[str, Any]) -> str:
    model = data.get("model")
    if route.endpoint == "show" and not model:
        model = data.get("name")  # /api/show still accepts the deprecated field
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "model is required")
    if len(model) > _MAX_MODEL_NAME or not model.isprintable():
        raise GatewayError(400, "invalid model name")
    return model
