"""JSON text columns (a message's recipients, skipped and warnings; a state's last event key and
open spends): how every store writes and reads them.

The encoders are built once: ``json.dumps`` with any option builds a new encoder per call, which
was a large part of the cost of encoding these short lists. Most lists read back are empty, and
are read without the parser. The single writer does this several times per send.
"""

from __future__ import annotations

import json
from typing import Any

compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# The state columns' format since the first schema (``", "`` between items); either parses.
spaced_json = json.JSONEncoder(ensure_ascii=False).encode

_EMPTY_LIST = "[]"


def json_list(text: str) -> list[Any]:
    """A JSON array column's value as a list."""
    value = [] if text == _EMPTY_LIST else json.loads(text)
    if not isinstance(value, list):
        raise ValueError("the column does not hold a JSON array")
    return value
