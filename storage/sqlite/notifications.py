"""Notification and refusal writes for the SQLite store (run on the writer thread): one
notification with its consent events, or many in bulk.

Notifications without consent events are written in bulk (``RECORD_NOTIFICATIONS``): one
multi-row ``INSERT ... ON CONFLICT DO NOTHING`` per chunk of 64, with no read before it and no
savepoint around it, and the new rows' ids follow from the rowids SQLite hands out in order. One
statement per chunk, however many notifications it holds: each statement step releases the GIL,
which the writer thread must then win back from the busy event loop, and that wait, not SQLite,
was most of the writer's time (``storage/sqlite/writer.py``). An earlier multi-row INSERT with
``RETURNING id`` still took one step per row, and was slower end to end (bench/README.md).
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import cache
from typing import Any

from storage.models import ConsentEvent
from storage.sql.dialect import SQLITE
from storage.sql.notification_rows import NotificationRow
from storage.sql.notifications import INSERT_COLUMNS
from storage.sql.statements import statements_for
from storage.sqlite.batch import BulkWrite
from storage.sqlite.consents import append_events

SQL = statements_for(SQLITE).notifications
Recorded = tuple[int, bool]  # (notification id, duplicate)


def record(
    connection: sqlite3.Connection,
    row: NotificationRow,
    events: Sequence[ConsentEvent],
    recorded_at: int,
) -> Recorded:
    """A notification and, only if it is new, the consent events it implies."""
    recorded = record_one(connection, row)
    if not recorded[1]:
        append_events(connection, events, recorded_at)
    return recorded


def prune(connection: sqlite3.Connection, signed_before: int) -> int:
    """As ``Store.prune_notifications`` says; how many were deleted."""
    return connection.execute(SQL.prune_notifications, (signed_before,)).rowcount


def add_refusals(connection: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Add to the refusal counters (rows of ``refusal_rows``)."""
    connection.executemany(SQL.add_refusals, rows)


def record_one(connection: sqlite3.Connection, row: NotificationRow) -> Recorded:
    """Insert one notification unless its (app, dedupe key) is stored; one write statement."""
    inserted = connection.execute(SQL.insert_notification, row).fetchone()
    if inserted is not None:
        return inserted[0], False
    existing = connection.execute(SQL.id_of_notification, (row[0], row[1])).fetchone()
    return existing[0], True


def record_many(connection: sqlite3.Connection, rows: Sequence[NotificationRow]) -> list[Recorded]:
    """Insert every notification whose (app, dedupe key) is not stored; a key repeated within
    ``rows`` is a duplicate after its first row. Changes the database with one statement.

    The insert is guarded: it writes nothing unless the largest id is far below SQLite's largest
    rowid, so the rows it writes are numbered max + 1, max + 2, ... in order. When every row is
    written (the common case), the ids follow from the last rowid without a read.
    """
    cursor = connection.execute(_guarded_insert_sql(len(rows)), [*_flat(rows), _ORDERED_BELOW])
    written, last = cursor.rowcount, cursor.lastrowid or 0
    if written == len(rows):
        return [(row_id, False) for row_id in range(last - written + 1, last + 1)]
    # Some keys are stored already (a retry) or repeat within the chunk: read the ids back.
    keys = [(row[0], row[1]) for row in rows]
    ids = _ids(connection.execute(_ids_sql(len(rows)), _flat(keys)).fetchone()[0])
    if written == 0 and not all(key in ids for key in keys):
        return _record_numbered_otherwise(connection, rows, keys, stored=ids)
    return _recorded(keys, ids, written=range(last - written + 1, last + 1))


def _record_numbered_otherwise(
    connection: sqlite3.Connection,
    rows: Sequence[NotificationRow],
    keys: list[tuple[str, str]],
    stored: dict[tuple[str, str], int],
) -> list[Recorded]:
    """The guard held every row back: the largest id is near SQLite's largest rowid, where
    SQLite picks rowids at random. Insert without the guard and read every id back."""
    connection.execute(_insert_sql(len(rows)), _flat(rows))
    ids = _ids(connection.execute(_ids_sql(len(rows)), _flat(keys)).fetchone()[0])
    new = {key for key in keys if key not in stored}
    recorded: list[Recorded] = []
    for key in keys:
        recorded.append((ids[key], key not in new))
        new.discard(key)
    return recorded


def _recorded(
    keys: list[tuple[str, str]], ids: dict[tuple[str, str], int], written: range
) -> list[Recorded]:
    """Each key's id, new only for the first row of a key whose id this insert wrote."""
    seen: set[tuple[str, str]] = set()
    recorded: list[Recorded] = []
    for key in keys:
        row_id = ids[key]
        recorded.append((row_id, row_id not in written or key in seen))
        seen.add(key)
    return recorded


RECORD_NOTIFICATIONS: BulkWrite[NotificationRow, Recorded] = BulkWrite(
    "record notifications", record_many, max_items=64, one_write=True
)

_COLUMN_COUNT = len(INSERT_COLUMNS.split(", "))
# Rowids are numbered max + 1 in order while the largest is below SQLite's largest (2**63 - 1);
# the guard leaves far more room than any chunk needs.
_ORDERED_BELOW = 2**62

# The ids of those keys that are stored, as one JSON text: one row, so one step.
_IDS_OF_KEYS = (
    "SELECT json_group_array(json_array(n.app_id, n.dedupe_key, n.id)) "
    "FROM (VALUES {pairs}) AS k JOIN notifications AS n "
    "ON n.app_id = k.column1 AND n.dedupe_key = k.column2"
)


@cache
def _ids_sql(count: int) -> str:
    return _IDS_OF_KEYS.format(pairs=_placeholders(count, 2))


@cache
def _guarded_insert_sql(count: int) -> str:
    """The insert, writing nothing unless the largest id is below the last parameter."""
    return (
        f"INSERT INTO notifications ({INSERT_COLUMNS}) "
        f"SELECT * FROM (VALUES {_placeholders(count, _COLUMN_COUNT)}) "
        "WHERE (SELECT coalesce(max(id), 0) FROM notifications) < ? "
        "ON CONFLICT (app_id, dedupe_key) DO NOTHING"
    )


@cache
def _insert_sql(count: int) -> str:
    return (
        f"INSERT INTO notifications ({INSERT_COLUMNS}) "
        f"VALUES {_placeholders(count, _COLUMN_COUNT)} "
        "ON CONFLICT (app_id, dedupe_key) DO NOTHING"
    )


def _placeholders(rows: int, columns: int) -> str:
    one = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([one] * rows)


def _flat(rows: Sequence[Sequence[Any]]) -> list[Any]:
    return [value for row in rows for value in row]


def _ids(found: str) -> dict[tuple[str, str], int]:
    return {(app_id, dedupe_key): row_id for app_id, dedupe_key, row_id in json.loads(found)}
