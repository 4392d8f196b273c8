"""Imports go one way: every module of vggt/ and training/ imports, the module-level import graph has no cycle,
no function hides an import of another vggt module, and vggt/runtime/ stands on its own.

The graph is read from the source with `ast`: an edge A -> B for every `import` statement of A outside a
function body (what runs when A is imported; `if TYPE_CHECKING:` blocks count too, since a cycle of
type-only imports is still a cycle of the design), B being the module it names (for
`from package import name`, the submodule package.name where one exists, else the package).
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vggt", "training")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _imported_names(node: ast.Import | ast.ImportFrom, module: str) -> Iterator[str]:
    """The modules an import statement of `module` loads, resolved to our module names where they are ours."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:  # relative: climb from the importing module's package
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        base = f"{anchor}.{base}" if base else anchor
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        yield submodule if submodule in MODULES else base


def _walk_outside_functions(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below `node` that runs at import time: function bodies are skipped, class bodies are not."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield child
        yield from _walk_outside_functions(child)


def _function_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node


def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))


def module_level_graph() -> dict[str, set[str]]:
    """{module: the modules of ours it imports at module level}."""
    graph = {}
    for module in MODULES:
        targets = set()
        for node in _walk_outside_functions(_tree(module)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets.update(name for name in _imported_names(node, module) if name in MODULES)
        graph[module] = targets - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None when the graph is acyclic (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the search path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_module_list_covers_both_packages() -> None:
    assert {"vggt.models.vggt", "vggt.weights", "vggt.runtime.kernels", "training.trainer"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_module_level_imports_form_no_cycle() -> None:
    cycle = find_cycle(module_level_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_search_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    graph["c"] = {"d"}
    assert find_cycle(graph) is None


def test_no_function_imports_one_of_our_modules() -> None:
    """Deferred imports of our own modules are how cycles hide; optional third-party packages may be deferred."""
    hidden = {
        f"{MODULES[module].relative_to(ROOT)}:{node.lineno} imports {name}"
        for module in MODULES
        for node in _function_level_imports(_tree(module))
        for name in _imported_names(node, module)
        if name.split(".")[0] in PACKAGES
    }
    assert not hidden, "\n".join(sorted(hidden))


@pytest.mark.parametrize("script", ["training.data.synthetic", "training.data.co3d_convert"])
def test_data_scripts_run_without_importing_themselves_twice(script: str) -> None:
    """A package __init__ that imports the module `python -m` runs makes runpy execute it a second time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", script, "--help"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr


def test_runtime_imports_nothing_of_vggt_outside_runtime() -> None:
    """VGGT_npu.patch copies vggt/runtime/ into upstream's tree, where the rest of this package does not exist."""
    outside = []
    for module in MODULES:
        if not module.startswith("vggt.runtime"):
            continue
        for node in ast.walk(_tree(module)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                outside += [
                    f"{module} imports {name}"
                    for name in _imported_names(node, module)
                    if name.startswith("vggt") and not name.startswith("vggt.runtime")
                ]
    assert not outside, "\n".join(outside)
