"""The project's layers import in one direction only, and no package's modules form a loop.

Devices know nothing of the server; the model toolchain knows nothing of devices
or the server; the hardware knows nothing above it (DESIGN.md, issue 20). Every
import counts, wherever it is written: at module level, deferred inside a
function, or under ``if TYPE_CHECKING:`` (a deferred import still ties the two
modules together, it only hides the tie from a module-level reading).
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backends", "models", "hw", "serve")
# package -> the packages it must never import
FORBIDDEN = {
    "backends": {"serve"},
    "models": {"serve", "backends"},
    "hw": {"backends", "models", "serve"},
}


def module_name(path: Path) -> str:
    """``serve/config.py`` -> ``serve.config``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    """Every module under the four packages, by dotted name."""
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports(source: str, module: str, is_package: bool, known: set[str]) -> Iterator[tuple[int, str]]:
    """(line, module imported) for every import anywhere in ``source``, relative ones resolved.

    ``from a import b`` imports ``a.b`` where that is a module in ``known``, else ``a``.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                yield node.lineno, target if target in known else base


@functools.cache  # read once for every test here
def import_graph() -> dict[str, list[tuple[int, str]]]:
    found = modules()
    known = set(found)
    return {name: list(imports(path.read_text(), name, path.name == "__init__.py", known))
            for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or of one that imports itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_scanner_sees_deferred_type_checking_and_relative_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"
        "from .cpu import CpuBackend\n"
        "from . import null\n"
        "if TYPE_CHECKING:\n"
        "    from serve.config import ModelConfig\n"
        "def f():\n"
        "    import serve.datatypes\n"
    )
    found = sorted(imports(source, "backends.gpu", False, {"backends.cpu", "backends.null"}))
    assert found == [(1, "typing"), (2, "numpy"), (3, "backends.cpu"), (4, "backends.null"),
                     (6, "serve.config"), (8, "serve.datatypes")]


def test_no_layer_imports_upwards() -> None:
    offenders = [
        f"{modules()[name].relative_to(ROOT)}:{line} imports {target}"
        for name, targets in import_graph().items()
        for line, target in targets
        if target.split(".")[0] in FORBIDDEN.get(name.split(".")[0], ())
    ]
    assert not offenders, "imports against the layering (backends -/-> serve; models -/-> serve, backends; " \
                          "hw -/-> backends, models, serve):\n" + "\n".join(offenders)


@pytest.mark.parametrize("package", PACKAGES)
def test_a_packages_modules_import_no_loop(package: str) -> None:
    graph = {name: {t for _, t in targets if t.startswith(f"{package}.")}
             for name, targets in import_graph().items() if name.startswith(f"{package}.")}
    assert not cycles(graph), f"import loops among the modules of {package}/: {cycles(graph)}"


def test_the_cycle_finder_finds_a_loop_and_only_a_loop() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"b"}}) == []
