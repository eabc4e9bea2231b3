"""Who is asking and is the body usable: API key, JSON body, model name, message count."""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.errors import GatewayError
from llm_gateway.keys import ApiKey, KeyRing, plausible_key, presented_key, utcnow
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.routes import ProxyRoute
from llm_gateway.routing.grant import Ticket
from llm_gateway.vocabulary import PRIORITIES, normalize_model

_MAX_MODEL_NAME = 256
# A request may ask for a lower priority class than its key's default, and for a
# shorter wait for a slot than the stack's default deadline.
PRIORITY_HEADER = "x-llm-priority"
DEADLINE_HEADER = "x-llm-deadline"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Gatekeeper:
    def __init__(
        self,
        keyring: KeyRing | None,
        metrics: GatewayMetrics,
        max_messages: int,
        max_embed_inputs: int = 2048,
    ):
        self._keyring = keyring
        self._metrics = metrics
        self._max_messages = max_messages
        self._max_embed_inputs = max_embed_inputs

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
        inputs = data.get("input")
        if (
            isinstance(inputs, list)
            and route.kind is not None
            and route.kind.is_embedding
            and len(inputs) > self._max_embed_inputs
        ):
            # Each input is a vector in the answer: a small body, a huge answer.
            limit = self._max_embed_inputs
            raise GatewayError(400, f"too many embedding inputs: {len(inputs)} (limit {limit})")
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


def ticket_for(
    api_key: ApiKey | None, headers: dict[str, str], model: str, default_deadline: float
) -> Ticket:
    """What the dispatcher needs: the key, its weight, the class asked for, the deadline."""
    allowed = api_key.priorities if api_key is not None else tuple(range(len(PRIORITIES)))
    priority = allowed[0]
    asked = headers.get(PRIORITY_HEADER)
    if asked is not None:
        name = asked.strip().lower()
        if name not in PRIORITIES:
            raise GatewayError(
                400, f"{PRIORITY_HEADER}: unknown class {asked!r} (use {', '.join(PRIORITIES)})"
            )
        priority = PRIORITIES.index(name)
        if priority not in allowed:
            raise GatewayError(403, f"this API key may not use priority '{name}'")
    deadline = default_deadline
    text = headers.get(DEADLINE_HEADER)
    if text is not None:
        try:
            asked_deadline = float(text)
        except ValueError:
            asked_deadline = -1.0
        if not 0 < asked_deadline < float("inf"):
            raise GatewayError(400, f"{DEADLINE_HEADER}: give seconds, a positive number")
        deadline = min(deadline, asked_deadline)  # a key may shorten it, never lengthen
    return Ticket(
        model=normalize_model(model),
        key=api_key.name if api_key is not None else "-",
        priority=priority,
        weight=api_key.weight if api_key is not None else 1.0,
        deadline_seconds=deadline,
    )
