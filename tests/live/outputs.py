"""What the live checks read: a stack's outputs, from `pulumi stack output --json
--show-secrets` (a Docker host) or from the file `llm-stack local up` writes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

OUTPUTS_ENV = "LLM_STACK_OUTPUTS"
# Roles that may publish host ports (the edge, and Grafana when the config enables it).
PUBLISHING_ROLES = ("nginx", "grafana")
# Ports the services listen on inside their containers (llm_stack.shared.names).
OLLAMA_PORT = 11434
REDIS_PORT = 6379


def outputs_path(config: pytest.Config) -> Path | None:
    """`--outputs FILE`, else $LLM_STACK_OUTPUTS, else None (start a local stack)."""
    given = config.getoption("llm_stack_outputs", default=None) or os.environ.get(OUTPUTS_ENV)
    return Path(given).expanduser().resolve() if given else None


def load_outputs(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise pytest.UsageError(f"stack outputs file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise pytest.UsageError(f"stack outputs file {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or "gatewayUrl" not in data:
        raise pytest.UsageError(
            f"{path} holds no stack outputs (expected gatewayUrl, ...): write it with "
            "`pulumi stack output --json --show-secrets > outputs.json`"
        )
    return data


def is_docker_host(outputs: dict[str, Any]) -> bool:
    """Outputs of a Pulumi deploy (containers by role), not of the local stack."""
    return "local" not in outputs and isinstance(outputs.get("containers"), dict)


@dataclass(frozen=True)
class Container:
    role: str
    name: str

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


def containers(outputs: dict[str, Any], *roles: str) -> list[Container]:
    """Every container the outputs name (by role), optionally of some roles only."""
    found = []
    for role, names in sorted(outputs.get("containers", {}).items()):
        if roles and role not in roles:
            continue
        found.extend(Container(role, name) for name in names)
    return found


def uses_gpus(outputs: dict[str, Any]) -> bool:
    """A GPU stack runs a GPU exporter (the stack outputs list it among the containers)."""
    return "gpu-exporter" in outputs.get("containers", {})
