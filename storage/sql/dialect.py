"""How SQLite and PostgreSQL spell the statements both backends share.

Every shared statement is written once, with ``?`` for each parameter (standard SQL's marker,
taken in order) and ``{greatest}`` where the larger of two values is meant; a read of the event
log (``events AS e``) says ``{settled}`` for "no event can still commit before this one" and
``{after}`` for "after the position (txid, id) of the next two parameters" (see ``Dialect``).
A dialect renders a whole group of statements when its backend's module is imported, never per
call: the statements a request runs are plain strings by then, and a driver that caches prepared
statements by their text (both do) sees the same text every time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Statements = TypeVar("Statements", bound="DataclassInstance")


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few things the two databases spell differently in the shared statements."""

    name: str
    # ``$1, $2, ...`` (PostgreSQL) instead of ``?`` (SQLite): each ``?`` becomes the next number.
    numbered_parameters: bool
    # The larger of two values: SQLite's scalar ``max``, PostgreSQL's ``greatest``.
    greatest: str
    # An event (``e``) no transaction can still commit before (``0006_events.sql``): on SQLite
    # every committed event (txid 0), on PostgreSQL one whose transaction is older than every
    # transaction still running.
    settled: str
    # An event (``e``) after the position (txid, id) of the next two parameters. SQLite's txid is
    # always 0, so after (0, n) is txid 0 and id above n there, which it reads from the rowid in
    # order, where a row-value comparison would scan the table.
    after: str

    def render(self, sql: str) -> str:
        """One statement in this dialect (at import time: see the module docstring)."""
        text = sql.format_map(
            {"greatest": self.greatest, "settled": self.settled, "after": self.after}
        )
        if not self.numbered_parameters:
            return text
        parts = text.split("?")
        numbered = (f"{part}${number}" for number, part in enumerate(parts[:-1], start=1))
        return "".join(numbered) + parts[-1]

    def render_all(self, statements: Statements) -> Statements:
        """A group of statements (a dataclass of neutral texts) with each one rendered."""
        rendered = {f.name: self.render(getattr(statements, f.name)) for f in fields(statements)}
        return replace(statements, **rendered)


SQLITE = Dialect(
    name="sqlite",
    numbered_parameters=False,
    greatest="max",
    settled="e.txid = 0",
    after="e.txid = ? AND e.id > ?",
)
POSTGRES = Dialect(
    name="postgres",
    numbered_parameters=True,
    greatest="greatest",
    settled="e.txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
    after="(e.txid, e.id) > (?, ?)",
)


# A text parameter compared with a column that a partial index's WHERE compares with a literal
# (``consents.channel``, ``deliveries.status``). Bare (``channel = ?``), SQLite compares the bound
# value with that literal to know whether the partial index may serve the statement, and every new
# binding then expires the prepared statement: each run was parsed and planned again, which on a
# one-key read cost more than the read. Cast, the value stays out of that test and the result is
# the same (the column is text); both databases still search an index with it
# (tests/storage/test_statements_prepared_once.py).
BOUND_TEXT = "CAST(? AS TEXT)"


def marks(count: int) -> str:
    """``count`` parameters in a row, for a VALUES list: ``?, ?, ?``."""
    return ", ".join("?" * count)
