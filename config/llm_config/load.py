"""Turn stack config values into a `StackConfig`, with errors that name the key.

Two sources feed the same function: the Pulumi program (values read through
`pulumi.Config`, see `llm_stack.pulumi_config`) and the local stack, which reads a
`Pulumi.<stack>.yaml` file the way the CLI does. Neither source imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llm_config.model import StackConfig

NAMESPACE = "llm-stack"
# Keys of the model (camelCase, as written in stack files).
SECTIONS = (
    "environment",
    "namePrefix",
    "platform",
    "ollama",
    "gateway",
    "edge",
    "balancer",
    "redis",
    "monitoring",
    "network",
    "kubernetes",
)
# Sections that are one plain value (the CLI passes them as text, not JSON).
PLAIN_SECTIONS = ("environment", "namePrefix", "platform")
# Keys that hold secrets: read with require_secret/get_secret, never into the model.
SECRET_KEYS = ("apiKeys", "redisPassword", "grafanaAdminPassword", "tlsKey", "otelHeaders")
# Plain keys outside the model that components read directly.
EXTRA_KEYS = ("tlsCert",)


class ConfigError(ValueError):
    """A stack config that cannot be deployed; the message names every bad key."""

    def __init__(self, problems: list[str], source: str = "stack config") -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid {source}:\n{lines}")


class SecureValue:
    """A `secure:` value of a stack file: ciphertext only the Pulumi CLI can decrypt."""

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return "SecureValue(<encrypted>)"


def _loc(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("function-after", "")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return f"{NAMESPACE}:{text}" if text else NAMESPACE


def parse_stack_config(values: Mapping[str, Any], stack: str, source: str = "") -> StackConfig:
    """Validate un-namespaced values (`{"ollama": {...}, ...}`) as one `StackConfig`."""
    where = source or f"stack config of {stack!r}"
    known = set(SECTIONS) | set(SECRET_KEYS) | set(EXTRA_KEYS)
    unknown = sorted(set(values) - known)
    if unknown:
        allowed = ", ".join(sorted(known))
        raise ConfigError(
            [f"{NAMESPACE}:{k}: unknown key (allowed: {allowed})" for k in unknown], where
        )
    data = {k: v for k, v in values.items() if k in SECTIONS}
    if "ollama" not in data:
        raise ConfigError(
            [f"{NAMESPACE}:ollama: missing (at least `models: [...]` is required)"], where
        )
    data.setdefault("namePrefix", f"llm-{stack}")
    try:
        return StackConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
            problems.append(f"{_loc(err['loc'])}: {msg}{shown}")
        raise ConfigError(problems, where) from None


def read_stack_file(path: Path) -> dict[str, Any]:
    """Read the `llm-stack:` values of a stack file as the Pulumi CLI sees them.

    Keys of other namespaces (`docker:host`, ...) are left out; `secure:` values come
    back as `SecureValue` so callers can tell a set secret from a missing one.
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such stack file"], str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"], str(path)) from None
    if not isinstance(doc, dict):
        raise ConfigError([f"{path}: expected a mapping with a `config:` key"], str(path))
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError([f"{path}: `config:` must be a mapping"], str(path))
    values: dict[str, Any] = {}
    for key, value in config.items():
        namespace, _, name = str(key).partition(":")
        if namespace != NAMESPACE or not name:
            continue
        values[name] = _unwrap_secure(value)
    return values


def _unwrap_secure(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SecureValue(str(value["secure"]))
        return {k: _unwrap_secure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_secure(v) for v in value]
    return value


def stack_name_of(path: Path) -> str:
    """`Pulumi.dev.yaml` -> `dev`."""
    name = path.name
    if not (name.startswith("Pulumi.") and name.endswith((".yaml", ".yml"))):
        raise ConfigError([f"{path}: a stack file is named Pulumi.<stack>.yaml"], str(path))
    return name.removeprefix("Pulumi.").rsplit(".", 1)[0]


def load_stack_file(path: Path) -> StackConfig:
    """The `StackConfig` of a `Pulumi.<stack>.yaml` file."""
    return parse_stack_config(read_stack_file(path), stack_name_of(path), source=str(path))
