"""Small modules with one concern, short functions: the limits the service's code keeps.

A module over ``MAX_MODULE_LINES`` or a function over ``MAX_FUNCTION_LINES`` fails here, and
so does a median function longer than ``MAX_MEDIAN_FUNCTION_LINES`` (counted with its
signature, docstring and body, across ``server``, ``storage`` and ``verify``).
"""

from __future__ import annotations

import ast
import statistics
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "storage", "verify")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 49
MAX_MEDIAN_FUNCTION_LINES = 7


def modules() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def functions() -> Iterator[tuple[str, int]]:
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                yield where, node.end_lineno - node.lineno + 1


def test_no_module_is_over_the_limit() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text("utf-8").splitlines()) for p in modules()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_function_is_over_the_limit() -> None:
    assert {where: n for where, n in functions() if n > MAX_FUNCTION_LINES} == {}


def test_the_median_function_is_short() -> None:
    assert statistics.median(n for _, n in functions()) <= MAX_MEDIAN_FUNCTION_LINES
