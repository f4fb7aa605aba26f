"""How a command prints: aligned tables for people, JSON for scripts, one line at a time."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

MAX_CELL = 60  # a longer cell is cut, with an ellipsis, to keep a row on one line


def write_line(stream: TextIO, line: str) -> None:
    """One line, at once: whoever reads the output (a terminal, a test) sees it as it happens."""
    stream.write(line + "\n")
    stream.flush()


def print_json(value: object, out: TextIO = sys.stdout) -> None:
    """The value as indented JSON, keys as the API gave them."""
    write_line(out, json.dumps(value, ensure_ascii=False, indent=2))


def cell(value: Any) -> str:
    """A value as a table shows it: empty for None, JSON for lists and objects, cut if long."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def table_lines(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The rows under a header of ``columns``, each column as wide as its widest cell."""
    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = [[c.upper() for c in columns], *cells]
    return [
        "  ".join(t.ljust(w) for t, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]


def print_table(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], out: TextIO = sys.stdout
) -> None:
    """``table_lines``, or a line saying there is nothing to show."""
    for line in table_lines(columns, rows) if rows else ["(none)"]:
        write_line(out, line)


def print_fields(fields: Mapping[str, Any], out: TextIO = sys.stdout) -> None:
    """One record as ``name: value`` lines, names aligned."""
    width = max((len(name) for name in fields), default=0)
    for name, value in fields.items():
        write_line(out, f"{name.ljust(width)}  {cell(value)}")
