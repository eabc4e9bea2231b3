"""gateway/Dockerfile and the build context the program hands to docker-build.

No Docker daemon runs here, so these read the Dockerfile: pinned bases, a final
stage without build tools that runs as an unprivileged user, and a .dockerignore
that lets in exactly what the Dockerfile copies.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from llm_stack.docker.gateway import REPO_ROOT, gateway_version
from llm_stack.policy.common import image_problem

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "gateway" / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _arg_defaults() -> dict[str, str]:
    return dict(arg.split("=", 1) for word, arg in _instructions() if word == "ARG" and "=" in arg)


def test_base_images_are_pinned() -> None:
    defaults = _arg_defaults()
    for _, arg in [i for i in _instructions() if i[0] == "FROM"]:
        image = arg.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image)
        assert image_problem(image) is None, image
    assert defaults["PYTHON_IMAGE"].startswith("python:3.11.")


def test_final_stage_runs_unprivileged_without_build_tools() -> None:
    final = _stages()[-1]
    words = [w for w, _ in final]
    text = " ".join(f"{w} {a}" for w, a in final)
    (user,) = [a for w, a in final if w == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert words.index("USER") > words.index("RUN")  # nothing runs as root after USER
    assert "uv" not in re.findall(r"\b(uv|gcc|make|build-essential)\b", text)
    assert "pip uninstall" in text
    copies = [a for w, a in final if w == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    (entrypoint,) = [a for w, a in final if w == "ENTRYPOINT"]
    assert entrypoint == '["python", "-m", "llm_gateway"]'
    (check,) = [a for w, a in final if w == "HEALTHCHECK"]
    assert "/health" in check
    assert "curl" not in check


def test_dependencies_come_from_the_workspace_lock() -> None:
    runs = [a for w, a in _instructions() if w == "RUN" and "uv sync" in a]
    assert len(runs) == 2
    for run in runs:
        assert "--frozen" in run
        assert "--no-dev" in run
        assert "--package llm-gateway" in run
    assert "--no-editable" in runs[-1]


def test_dockerignore_admits_exactly_what_is_copied() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied: set[str] = set()
    for word, arg in _instructions():
        if word == "COPY" and not arg.startswith("--from"):
            copied.update(arg.split()[:-1])
    assert copied == admitted
    for path in admitted:
        assert (REPO / path).exists(), path


def test_image_tag_is_the_gateway_version() -> None:
    with (REPO / "gateway" / "pyproject.toml").open("rb") as handle:
        version = tomllib.load(handle)["project"]["version"]
    assert gateway_version() == version
    assert REPO_ROOT == REPO
