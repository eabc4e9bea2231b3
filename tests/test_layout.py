"""The packages depend on each other in one direction only (see docs/architecture.md).

config <- renderers (nginx, monitoring) <- infra / local runner; the gateway and the
emulator are stand-alone services that import none of the others. Read from the
source with `ast`, so an import hidden inside a function counts too.
"""

from __future__ import annotations

import ast
import sys
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

# What each package may import of the others. llm_stack may import of the gateway only
# its contract (`llm_gateway.contract`: the key's shape and digest, the GATEWAY_* names).
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


# The only gateway module another package may import, and what that module may import.
GATEWAY_CONTRACT = "llm_gateway.contract"


def gateway_modules_imported(package_dir: Path) -> dict[str, set[str]]:
    """The llm_gateway modules each module of `package_dir` imports (`llm_gateway` alone
    for `import llm_gateway` or `from llm_gateway import x`)."""
    found: dict[str, set[str]] = {}
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.split(".")[0] == "llm_gateway")
            elif (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.level == 0
                and node.module.split(".")[0] == "llm_gateway"
            ):
                names.add(node.module)
        if names:
            found[str(path.relative_to(REPO))] = names
    return found


def test_infra_imports_only_the_gateways_contract() -> None:
    found = gateway_modules_imported(PACKAGES["llm_stack"])
    bad = {module: names for module, names in found.items() if names != {GATEWAY_CONTRACT}}
    assert not bad, f"llm_stack may import only {GATEWAY_CONTRACT} of the gateway: {bad}"
    assert found, "the local stack mints its dev key with the contract: the scan found nothing"


def test_the_contract_imports_only_the_standard_library() -> None:
    path = PACKAGES["llm_gateway"] / "contract.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


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


# Directories of the packages whose modules are listed in their __init__.py docstring.
def package_dirs() -> list[Path]:
    return sorted(
        directory
        for root in PACKAGES.values()
        for directory in [root, *root.rglob("*")]
        if directory.is_dir() and directory.name != "__pycache__" and any(directory.glob("*.py"))
    )


def unnamed_modules(directory: Path) -> list[str]:
    """The modules (`.py`, and `.lua` in non-package subfolders), subpackages (`name/`)
    of `directory` that its __init__.py docstring does not name."""
    init = directory / "__init__.py"
    if not init.exists():
        return ["__init__.py (no module map)"]
    text = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
    wanted = [
        p.name for p in directory.glob("*.py") if p.name not in {"__init__.py", "__main__.py"}
    ]
    for sub in directory.iterdir():
        if not sub.is_dir() or sub.name == "__pycache__":
            continue
        if (sub / "__init__.py").exists():
            wanted.append(f"{sub.name}/")
        else:
            wanted += [f.name for f in sub.iterdir() if f.suffix in {".py", ".lua"}]
    return sorted(name for name in wanted if not _named(name, text))


def _named(name: str, text: str) -> bool:
    """`keys.py`, or `keys` in backticks, or `routing/`."""
    return name in text or f"`{name.removesuffix('.py')}`" in text


@pytest.mark.parametrize("directory", package_dirs(), ids=lambda d: d.relative_to(REPO).as_posix())
def test_every_module_is_named_in_its_package_map(directory: Path) -> None:
    assert not unnamed_modules(directory), (
        f"{directory.relative_to(REPO)}/__init__.py does not name {unnamed_modules(directory)}"
    )


def test_the_map_checker_sees_a_missing_module(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text('"""`a.py`: one job; `sub/`: another."""\n')
    (tmp_path / "a.py").write_text("")
    (tmp_path / "b.py").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "__init__.py").write_text("")
    (tmp_path / "lua").mkdir()
    (tmp_path / "lua" / "x.lua").write_text("")
    assert unnamed_modules(tmp_path) == ["b.py", "x.lua"]


def test_the_docker_platform_is_named_and_kubernetes_borrows_only_shared_pieces() -> None:
    stack = PACKAGES["llm_stack"]
    assert (stack / "docker" / "stack.py").is_file()
    assert not (stack / "components").exists()
    # What both platforms use lives in llm_stack.shared, never in the other platform.
    kubernetes = [
        f"{path.name}: {line.strip()}"
        for path in sorted((stack / "kubernetes").glob("*.py"))
        for line in path.read_text().splitlines()
        if line.lstrip().startswith(("from llm_stack.docker", "import llm_stack.docker"))
    ]
    assert kubernetes == []


# The router was one 643-line module with six jobs; each of its modules keeps one job.
ROUTING_MODULE_MAX_LINES = 320


def test_no_routing_module_grows_past_one_job() -> None:
    routing = PACKAGES["llm_gateway"] / "routing"
    modules = sorted(routing.glob("*.py"))
    assert len(modules) > 5
    long = {
        p.name: n
        for p in modules
        if (n := len(p.read_text().splitlines())) > ROUTING_MODULE_MAX_LINES
    }
    assert long == {}
