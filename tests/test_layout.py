"""The packages depend on each other in one direction only (see docs/architecture.md).

config <- renderers (nginx, monitoring) <- infra / local runner; the gateway and the
emulator are stand-alone services that import none of the others. Read from the
source with `ast`, so an import hidden inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PACKAGES = {
    "llm_config": REPO / "config" / "llm_config",
    "llm_emulator": REPO / "emulator" / "llm_emulator",
    "llm_gateway": REPO / "gateway" / "llm_gateway",
    "llm_nginx": REPO / "nginx" / "llm_nginx",
    "llm_monitoring": REPO / "monitoring" / "llm_monitoring",
    "llm_stack": REPO / "infra" / "llm_stack",
}

# What each package may import of the others. llm_stack's local runner mints keys with
# the gateway's own function (one definition of a key's shape and digest).
ALLOWED: dict[str, set[str]] = {
    "llm_config": set(),
    "llm_emulator": set(),
    "llm_gateway": set(),
    "llm_nginx": {"llm_config"},
    "llm_monitoring": {"llm_config"},
    "llm_stack": {"llm_config", "llm_nginx", "llm_monitoring", "llm_gateway"},
}


def imported_packages(package_dir: Path, root: Path = REPO) -> dict[str, set[str]]:
    """Project packages imported by each module of `package_dir`, by module path."""
    found: dict[str, set[str]] = {}
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(root))] = names & set(PACKAGES)
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_imports_only_what_it_may(package: str) -> None:
    allowed = ALLOWED[package] | {package}
    bad = {
        module: sorted(names - allowed)
        for module, names in imported_packages(PACKAGES[package]).items()
        if names - allowed
    }
    assert not bad, f"{package} imports packages it must not: {bad}"


def test_no_cycle_between_packages() -> None:
    edges = {name: set(targets) for name, targets in ALLOWED.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert not [name for name in edges if reaches(name, name, set())]


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("def f():\n    from llm_gateway.keys import mint_key\n")
    assert imported_packages(tmp_path, root=tmp_path) == {"mod.py": {"llm_gateway"}}
