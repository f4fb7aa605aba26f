"""The import structure of the service: packages by capability, imports flowing one way.

Every ``import`` in every module counts, including those inside functions and under
``TYPE_CHECKING``: a circle hidden in a function is still a circle. ``server/__init__.py``
describes the layers this test keeps.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# From the bottom up: a part may import itself and the parts before it, never one after it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("verify",),
    ("storage",),
    ("server.settings", "server.errors"),
    ("server.credentials",),
    ("server.appkeys",),
    ("server.runtime",),
    ("server.ops",),
    ("server.web",),
    ("server.platforms",),
    ("server.consent",),
    ("server.intake",),
    ("server.sending",),
    ("server.events",),
    ("server.delivery",),
    ("server.workers",),
    ("server.api",),
    ("server.console",),
    ("server.dev",),
    ("server.wiring",),
    ("server.cli",),
)
# The worker processes' entry points: they run apart from the service and build their own.
WORKER_ENTRY_POINTS = (
    "server.workers.intake_process",
    "server.workers.call_process",
    "server.workers.push_process",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> Iterator[tuple[str, Path]]:
    for top in ("server", "storage", "verify"):
        for path in sorted((ROOT / top).rglob("*.py")):
            yield module_name(path), path


def imported_modules(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """Every module an ``import`` names (a ``from x import y`` names x, or x.y when y is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def layer_of(module: str) -> int | None:
    for index, parts in enumerate(LAYERS):
        if any(module == part or module.startswith(part + ".") for part in parts):
            return index
    return None


def part_of(module: str) -> str | None:
    for parts in LAYERS:
        for part in parts:
            if module == part or module.startswith(part + "."):
                return part
    return None


def violations() -> Iterator[str]:
    for name, path in project_modules():
        own = layer_of(name)
        for line, target in imported_modules(path, name):
            other = layer_of(target)
            if own is None or other is None or part_of(target) == part_of(name):
                continue
            if other > own or (other == own and part_of(target) != part_of(name)):
                yield f"{path.relative_to(ROOT)}:{line} imports {target}"


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name, _ in project_modules() if layer_of(name) is None]
    unplaced = [name for name in unplaced if name != "server"]
    assert unplaced == []


def test_imports_flow_one_way() -> None:
    assert list(violations()) == []


@pytest.mark.parametrize("entry_point", WORKER_ENTRY_POINTS)
def test_worker_entry_points_do_not_import_the_wiring(entry_point: str) -> None:
    path = ROOT / (entry_point.replace(".", "/") + ".py")
    wiring = [target for _, target in imported_modules(path, entry_point) if "wiring" in target]
    assert wiring == []


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name imported from a package counts as the
    package unless it is a module itself)."""
    modules = dict(project_modules())
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {target for _, target in imported_modules(path, name) if target in modules}
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            component.append(node)
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_between_modules() -> None:
    graph = import_graph()
    # A package's __init__ re-exporting its own modules is not a circle of design.
    for name in graph:
        graph[name] = {target for target in graph[name] if not name.startswith(target + ".")}
    assert cycles(graph) == []
