"""Which stack file a local run uses, its typed config, and the API keys it declares.

The stack file is read exactly as the Pulumi program reads it (`read_stack_file` +
`parse_stack_config`), so a config the deploy would refuse is refused here too, with
the same key-naming message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_config.api_keys import validate_api_keys
from llm_config.load import (
    ConfigError,
    SecureValue,
    parse_stack_config,
    read_stack_file,
    stack_name_of,
)
from llm_config.model import StackConfig

from llm_stack.local.errors import LocalStackError

PROJECT_FILE = "Pulumi.yaml"
# The key the local stack mints for itself; a stack-file key of the same name loses.
DEV_KEY_NAME = "dev"
# Its admin twin (`admin: true`): the admin endpoints of the local stack.
DEV_ADMIN_KEY_NAME = "dev-admin"
LOCAL_KEY_NAMES = (DEV_KEY_NAME, DEV_ADMIN_KEY_NAME)


@dataclass(frozen=True)
class StackSource:
    """A loaded stack file: name, path, config and the keys the local stack can use."""

    stack: str
    path: Path
    config: StackConfig
    # Plain (unencrypted) `apiKeys` entries of the stack file, by key name.
    api_keys: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # What was left out and why (encrypted entries, a clash with the dev key).
    notes: tuple[str, ...] = ()


def project_root(start: Path) -> Path | None:
    """The nearest directory at or above `start` holding a Pulumi.yaml."""
    for directory in (start, *start.parents):
        if (directory / PROJECT_FILE).is_file():
            return directory
    return None


def stack_file_for(stack: str, cwd: Path) -> Path:
    """`Pulumi.<stack>.yaml` in `cwd`, else in the project root above it."""
    name = f"Pulumi.{stack}.yaml"
    candidates = [cwd / name]
    root = project_root(cwd)
    if root is not None and root != cwd:
        candidates.append(root / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = " or ".join(str(c.parent) for c in candidates)
    raise LocalStackError(
        f"no stack file {name} in {where}",
        "run from the project directory, pick an existing stack (--stack dev), "
        "or give the file with --config PATH",
    )


def _has_secure(value: object) -> bool:
    if isinstance(value, SecureValue):
        return True
    if isinstance(value, Mapping):
        return any(_has_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secure(v) for v in value)
    return False


def _plain_api_keys(value: object) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The `apiKeys` entries usable without the Pulumi CLI, and notes on the others."""
    if value is None:
        return {}, []
    if isinstance(value, SecureValue):
        return {}, ["apiKeys is encrypted (only the Pulumi CLI can read it): not used locally"]
    if not isinstance(value, Mapping):
        # parse-time validation below reports the shape problem with the key's name.
        return {}, []
    keys: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for name, entry in value.items():
        if _has_secure(entry):
            notes.append(f"apiKeys.{name} is encrypted (only the Pulumi CLI can read it): skipped")
        elif name in LOCAL_KEY_NAMES:
            notes.append(f"apiKeys.{name}: the local stack mints its own '{name}' key")
        else:
            keys[str(name)] = dict(entry) if isinstance(entry, Mapping) else entry
    return keys, notes


def load_source(path: Path) -> StackSource:
    """Read and validate a stack file; `ConfigError` when the deploy would refuse it too."""
    values = read_stack_file(path)
    stack = stack_name_of(path)
    config = parse_stack_config(values, stack, source=str(path))
    keys, notes = _plain_api_keys(values.get("apiKeys"))
    if keys:
        problems = validate_api_keys(keys)
        if problems:
            raise ConfigError(problems, str(path))
    return StackSource(stack=stack, path=path, config=config, api_keys=keys, notes=tuple(notes))
