"""Every image pin lives in llm_config.images, and everything else reads it from there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from llm_config import StackConfig, images
from llm_config.model import _pinned_image
from llm_stack.policy.common import image_problem

from tests.infra.stack_run import StackRun

REPO = Path(__file__).resolve().parents[2]
ALL_PINS = {**images.RUNTIME, **images.GATEWAY_BUILD_ARGS}


@pytest.mark.parametrize("reference", sorted(ALL_PINS.values()))
def test_each_pin_is_an_exact_version(reference: str) -> None:
    assert _pinned_image(reference) == reference
    assert image_problem(reference) is None
    tag = reference.rsplit(":", 1)[1]
    assert re.match(r"^v?\d+\.\d+\.\d+", tag), f"{reference}: not an exact x.y.z tag"


def test_the_config_defaults_are_the_pins() -> None:
    config = StackConfig.model_validate({"ollama": {"models": ["llama3.2:1b"]}})
    assert {
        "ollama": config.ollama.image,
        "nginx": config.edge.image,
        "redis": config.redis.image,
        "grafana": config.monitoring.grafana.image,
        "prometheus": config.monitoring.prometheus_image,
        "nginx-exporter": config.monitoring.nginx_exporter_image,
        "gpu-exporter": config.monitoring.gpu_exporter_image,
    } == images.RUNTIME


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_leave_images_to_the_pins(stack: str) -> None:
    """A stack file may override an image, but ours do not: the pins stay in one place."""
    text = (REPO / f"Pulumi.{stack}.yaml").read_text()

    def image_keys(value: object) -> list[str]:
        if isinstance(value, dict):
            return [k for k in value if "image" in str(k).lower()] + [
                found for v in value.values() for found in image_keys(v)
            ]
        if isinstance(value, list):
            return [found for v in value for found in image_keys(v)]
        return []

    assert image_keys(yaml.safe_load(text)) == []


def test_the_deployed_stack_pulls_the_pins(prod_run: StackRun) -> None:
    pulled = {i.plain("name") for i in prod_run.of_type("docker:index/remoteImage:RemoteImage")}
    assert set(images.RUNTIME.values()) <= pulled
    (built,) = prod_run.of_type("docker-build:index:Image")
    assert built.plain("buildArgs") == images.GATEWAY_BUILD_ARGS


def test_the_dockerfile_defaults_are_the_pins() -> None:
    """`docker build` by hand gets the same bases as the program's build args."""
    text = (REPO / "gateway" / "Dockerfile").read_text()
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))
    assert {k: defaults.get(k) for k in images.GATEWAY_BUILD_ARGS} == images.GATEWAY_BUILD_ARGS


def test_no_other_file_spells_a_pinned_tag() -> None:
    """The exact references appear in images.py only (docs name the module instead).

    Tests are left out: they use image references as examples of what a rule accepts.
    """
    pins = set(ALL_PINS.values())
    suffixes = {".py", ".yaml", ".yml", ".toml", ".md", ".cfg", ".ini", ".sh"}
    offenders = []
    for path in REPO.rglob("*"):
        parts = set(path.relative_to(REPO).parts)
        skipped = {".git", ".venv", "node_modules", ".tools", ".mypy_cache", ".ruff_cache"}
        if parts & skipped or path.relative_to(REPO).parts[0] == "tests":
            continue
        if not path.is_file() or (path.suffix not in suffixes and path.name != "Makefile"):
            continue
        if path == REPO / "config" / "llm_config" / "images.py":
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{path.relative_to(REPO)}: {pin}" for pin in pins if pin in text]
    assert offenders == []
