"""Notification, subscribe-report and refusal SQL for the SQLite store (run on the writer thread).

Notifications without consent events are written in bulk (``RECORD_NOTIFICATIONS``): one
multi-row ``INSERT ... ON CONFLICT DO NOTHING`` per chunk of 64, with no read before it and no
savepoint around it, and the new rows' ids follow from the rowids SQLite hands out in order. One
statement per chunk, however many notifications it holds: each statement step releases the GIL,
which the writer thread must then win back from the busy event loop, and that wait, not SQLite,
was most of the writer's time (``storage/sqlite/writer.py``). An earlier multi-row INSERT with
``RETURNING id`` still took one step per row and lost 15 % end to end.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from functools import cache
from typing import Any

from storage.models import NotificationRecord, StoredNotification, SubscribeReport
from storage.sqlite.writer import BulkWrite
from storage.timecodec import from_millis, optional_datetime, optional_millis, to_millis

NotificationRow = tuple[Any, ...]
Recorded = tuple[int, bool]  # (notification id, duplicate)

COLUMNS = (
    "id, app_id, dedupe_key, kind, handler, raw_body, charset, sign_type, rule, "
    "key_label, occurred_at, received_at"
)
_INSERT_COLUMNS = COLUMNS.removeprefix("id, ")
_INSERT_ONE = (
    f"INSERT INTO notifications ({_INSERT_COLUMNS}) "  # noqa: S608 (constant)
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (app_id, dedupe_key) DO NOTHING RETURNING id"
)

INSERT_REPORT = """
INSERT INTO subscribe_reports (app_id, user_id, idempotency_key, body_sha256, body, received_at,
    outcome)
VALUES (?, ?, ?, ?, ?, ?, '')
"""
ADD_REFUSALS = """
INSERT INTO refusal_counts (app_id, reason, count, last_at) VALUES (?, ?, ?, ?)
ON CONFLICT (app_id, reason) DO UPDATE SET
    count = count + excluded.count, last_at = max(last_at, excluded.last_at)
"""


def notification_row(record: NotificationRecord) -> NotificationRow:
    return (
        record.app_id,
        record.dedupe_key,
        record.kind,
        record.handler,
        record.raw_body,
        record.charset,
        record.sign_type,
        record.rule,
        record.key_label,
        optional_millis(record.occurred_at),
        to_millis(record.received_at),
    )


def record_one(connection: sqlite3.Connection, row: NotificationRow) -> Recorded:
    """Insert one notification unless its (app, dedupe key) is stored; one write statement."""
    inserted = connection.execute(_INSERT_ONE, row).fetchone()
    if inserted is not None:
        return inserted[0], False
    existing = connection.execute(
        "SELECT id FROM notifications WHERE app_id = ? AND dedupe_key = ?", (row[0], row[1])
    ).fetchone()
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
        f"INSERT INTO notifications ({_INSERT_COLUMNS}) "  # noqa: S608 (constant)
        f"SELECT * FROM (VALUES {_placeholders(count, _INSERT_COLUMNS.count(',') + 1)}) "
        "WHERE (SELECT coalesce(max(id), 0) FROM notifications) < ? "
        "ON CONFLICT (app_id, dedupe_key) DO NOTHING"
    )


@cache
def _insert_sql(count: int) -> str:
    return (
        f"INSERT INTO notifications ({_INSERT_COLUMNS}) "  # noqa: S608 (constant)
        f"VALUES {_placeholders(count, _INSERT_COLUMNS.count(',') + 1)} "
        "ON CONFLICT (app_id, dedupe_key) DO NOTHING"
    )


def _placeholders(rows: int, columns: int) -> str:
    one = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([one] * rows)


def _flat(rows: Sequence[Sequence[Any]]) -> list[Any]:
    return [value for row in rows for value in row]


def _ids(found: str) -> dict[tuple[str, str], int]:
    return {(app_id, dedupe_key): row_id for app_id, dedupe_key, row_id in json.loads(found)}


def stored_notification(row: sqlite3.Row) -> StoredNotification:
    return StoredNotification(
        id=row[0],
        app_id=row[1],
        dedupe_key=row[2],
        kind=row[3],
        handler=row[4],
        raw_body=bytes(row[5]),
        charset=row[6],
        sign_type=row[7],
        rule=row[8],
        key_label=row[9],
        occurred_at=optional_datetime(row[10]),
        received_at=from_millis(row[11]),
    )


def report_row(report: SubscribeReport) -> tuple[Any, ...]:
    return (
        report.app_id,
        report.user_id,
        report.idempotency_key,
        report.body_sha256,
        report.body,
        to_millis(report.received_at),
    )
