"""The SQLite store's delivery totals (``delivery_counts``: pending, failing, dead), kept by the
writer jobs that change deliveries, in their own transaction.

Row triggers kept them once (migration 0011); SQLite runs a trigger's program for every row, and
that cost each delivery the fan-out made as much as its insert (bench/README.md), so migration
0012 dropped them. Every statement that makes a delivery or changes its status or attempts
reports each row's state before and after here, and the totals move by the difference: one
upsert per total that changed, whatever the number of rows.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple


class StateChange(NamedTuple):
    """One delivery's (status, attempts) before a write (None: it is new) and after it."""

    destination: str
    before: tuple[str, int] | None
    after: tuple[str, int]


_ADD = (
    "INSERT INTO delivery_counts (destination, state, count) VALUES (?, ?, ?) "
    "ON CONFLICT (destination, state) DO UPDATE SET count = count + excluded.count"
)


def totals_of(status: str, attempts: int) -> tuple[str, ...]:
    """The totals a delivery in this state counts in: a pending one that has failed an attempt
    is failing as well; a delivered one counts in none."""
    if status == "pending":
        return ("pending", "failing") if attempts > 0 else ("pending",)
    if status == "dead":
        return ("dead",)
    return ()


def count_changes(connection: sqlite3.Connection, changes: Iterable[StateChange]) -> None:
    """Move the totals by what ``changes`` did."""
    delta: Counter[tuple[str, str]] = Counter()
    for change in changes:
        for total in totals_of(*change.after):
            delta[change.destination, total] += 1
        if change.before is not None:
            for total in totals_of(*change.before):
                delta[change.destination, total] -= 1
    rows = [(destination, total, n) for (destination, total), n in delta.items() if n]
    connection.executemany(_ADD, rows)


def count_new_pending(connection: sqlite3.Connection, destination: str, made: int) -> None:
    """``made`` new pending deliveries, none attempted yet."""
    if made:
        connection.execute(_ADD, (destination, "pending", made))
