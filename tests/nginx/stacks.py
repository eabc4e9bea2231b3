"""Stack configs for the nginx tests: the real stack files and small variations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_config import load_stack_file, parse_stack_config
from llm_config.model import StackConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_FILES = sorted(REPO_ROOT.glob("Pulumi.*.yaml"))


def stack_file(name: str) -> StackConfig:
    return load_stack_file(REPO_ROOT / f"Pulumi.{name}.yaml")


def small_stack(**sections: Any) -> StackConfig:
    """A minimal `test` stack; keyword arguments are config sections (camelCase keys)."""
    values: dict[str, Any] = {"environment": "test", "ollama": {"models": ["llama3.2:1b"]}}
    values.update(sections)
    return parse_stack_config(values, "test")
