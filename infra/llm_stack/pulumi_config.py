"""The stack config as the Pulumi CLI hands it to the program: typed model + secrets.

Everything is read and checked here, before any resource exists: a bad value or a
missing secret stops the program with a message that names the key and the command
that fixes it. Secret values leave this module only as secret `Output`s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from llm_config.api_keys import validate_api_keys
from llm_config.load import NAMESPACE, PLAIN_SECTIONS, SECTIONS, ConfigError, parse_stack_config
from llm_config.model import StackConfig
from pulumi.runtime import config as runtime_config

# Structured values arrive from the CLI as JSON text; everything else is a plain string.
_STRUCTURED = frozenset(SECTIONS) - set(PLAIN_SECTIONS) | {"apiKeys"}

# The policy pack treats anything shorter in a secret variable as a literal.
_MIN_PASSWORD = 16

_SET_SECRET = {
    "apiKeys": "pulumi config set --secret --path 'apiKeys.<name>.digest' <sha256 hex of the key>"
    "  (mint one: llm-gateway keys new --name <name>)",
    "redisPassword": "pulumi config set --secret redisPassword",
    "grafanaAdminPassword": "pulumi config set --secret grafanaAdminPassword",
    "tlsKey": 'pulumi config set --secret tlsKey -- "$(cat privkey.pem)"',
    "tlsCert": 'pulumi config set tlsCert -- "$(cat fullchain.pem)"',
    "otelHeaders": "pulumi config set --secret otelHeaders 'x-api-key=...,x-tenant=...'",
}


@dataclass(frozen=True)
class StackSecrets:
    """Secrets set in the stack config; `None` where unset (dev generates its own)."""

    api_keys: pulumi.Output[dict[str, Any]] | None
    redis_password: pulumi.Output[str] | None
    grafana_admin_password: pulumi.Output[str] | None
    tls_key: pulumi.Output[str] | None
    # A certificate is public; only its key is a secret.
    tls_cert: str | None
    # OTEL_EXPORTER_OTLP_HEADERS of the gateway (a tracing backend's credentials).
    otel_headers: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class SourcedConfig:
    config: StackConfig
    secrets: StackSecrets


def _key(name: str) -> str:
    return f"{NAMESPACE}:{name}"


def _configured_names() -> set[str]:
    """Every `llm-stack:*` key the CLI passed, so unknown keys can be reported.

    `pulumi.Config` only answers for keys one asks about; the runtime's config map
    (and the PULUMI_CONFIG fallback it reads) is the one place listing all of them.
    """
    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    prefix = f"{NAMESPACE}:"
    return {k.removeprefix(prefix) for k in keys if k.startswith(prefix)}


def _raw(name: str) -> Any:
    return runtime_config.get_config(_key(name))


def _decode(name: str, raw: Any) -> Any:
    if name not in _STRUCTURED or not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError([f"{_key(name)}: expected a structured value (a YAML map)"]) from None


def _is_secret(name: str) -> bool:
    return runtime_config.is_config_secret(_key(name)) or _key(name) in set(
        runtime_config.get_config_secret_keys_env()
    )


def required_secrets(config: StackConfig) -> tuple[str, ...]:
    """The secret keys this stack cannot deploy without."""
    needed: list[str] = []
    if config.environment == "prod":
        needed += ["apiKeys", "redisPassword"]
        if config.monitoring.grafana.enabled:
            needed.append("grafanaAdminPassword")
    if config.edge.tls == "provided":
        needed += ["tlsCert", "tlsKey"]
    return tuple(needed)


def check_secrets(config: StackConfig, values: Mapping[str, Any], secret: set[str]) -> None:
    """Raise `ConfigError` naming every missing, plain-text or malformed secret."""
    problems: list[str] = []
    for name in required_secrets(config):
        if values.get(name) in (None, "", {}):
            why = f"required for the {config.environment} stack"
            if name in ("tlsCert", "tlsKey"):
                why = "required by edge.tls: provided"
            problems.append(f"{_key(name)}: missing ({why}); set it with: {_SET_SECRET[name]}")
    for name in ("apiKeys", "redisPassword", "grafanaAdminPassword", "tlsKey", "otelHeaders"):
        if values.get(name) is not None and name not in secret:
            problems.append(
                f"{_key(name)}: stored in plain text in the stack file; remove it "
                f"(pulumi config rm {name}) and set it with: {_SET_SECRET[name]}"
            )
    if values.get("apiKeys") is not None:
        problems += validate_api_keys(values["apiKeys"], _key("apiKeys"))
    for name in ("redisPassword", "grafanaAdminPassword"):
        value = values.get(name)
        if value is not None and (not isinstance(value, str) or len(value) < _MIN_PASSWORD):
            problems.append(f"{_key(name)}: use at least {_MIN_PASSWORD} characters")
    cert, key = values.get("tlsCert"), values.get("tlsKey")
    if cert is not None and "-----BEGIN CERTIFICATE-----" not in str(cert):
        problems.append(f"{_key('tlsCert')}: not a PEM certificate; {_SET_SECRET['tlsCert']}")
    if key is not None and "PRIVATE KEY-----" not in str(key):
        problems.append(f"{_key('tlsKey')}: not a PEM private key; {_SET_SECRET['tlsKey']}")
    if problems:
        raise ConfigError(problems, "secrets of the stack config")


def read_pulumi_config(stack: str | None = None) -> SourcedConfig:
    """Read, check and type the stack config of the running Pulumi program."""
    stack_name = stack or pulumi.get_stack()
    names = _configured_names()
    values: dict[str, Any] = {name: _decode(name, _raw(name)) for name in sorted(names)}
    config = parse_stack_config(values, stack_name, source=f"stack config of {stack_name!r}")
    secret_names = {name for name in names if _is_secret(name)}
    check_secrets(config, values, secret_names)

    def secret_of(name: str) -> pulumi.Output[Any] | None:
        value = values.get(name)
        return None if value is None else pulumi.Output.secret(value)

    cert = values.get("tlsCert")
    return SourcedConfig(
        config=config,
        secrets=StackSecrets(
            api_keys=secret_of("apiKeys"),
            redis_password=secret_of("redisPassword"),
            grafana_admin_password=secret_of("grafanaAdminPassword"),
            tls_key=secret_of("tlsKey"),
            tls_cert=None if cert is None else str(cert),
            otel_headers=secret_of("otelHeaders"),
        ),
    )
