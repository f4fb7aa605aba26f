"""Notification, subscribe-report and refusal SQL for the SQLite store (run on the writer thread).

Recording a notification is the intake hot path, so notifications without consent events are
written in bulk: every such notification of a write batch goes in with one multi-row INSERT,
bracketed by two one-row JSON queries (which keys exist, which ids they got). Python's sqlite3
releases the GIL around every statement step, and each release can cost the writer thread a wait
for the busy event-loop thread to hand it back; a batch of N notifications so needs about ten of
those hand-offs instead of 2N (bench/README.md has the measurements).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from storage.models import NotificationRecord, StoredNotification, SubscribeReport
from storage.timecodec import from_millis, optional_datetime, optional_millis, to_millis

NotificationRow = tuple[Any, ...]
Recorded = tuple[int, bool]  # (notification id, duplicate)

COLUMNS = (
    "id, app_id, dedupe_key, kind, handler, raw_body, charset, sign_type, rule, "
    "key_label, occurred_at, received_at"
)
_INSERT_COLUMNS = COLUMNS.removeprefix("id, ")
_ROW_MARKS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_ONE = (
    f"INSERT INTO notifications ({_INSERT_COLUMNS}) VALUES {_ROW_MARKS} "  # noqa: S608 (constant)
    "ON CONFLICT (app_id, dedupe_key) DO NOTHING RETURNING id"
)
# SQLite builds may cap bound parameters at 999: 11 per row, so 90 rows per statement at most.
ROWS_PER_STATEMENT = 90

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
    """``record_one`` for each row, in order, with a constant number of statements per chunk.

    A key seen earlier in the same call is a duplicate of that first row, exactly as if the rows
    had been recorded one after another.
    """
    if len(rows) == 1:
        return [record_one(connection, rows[0])]
    recorded: list[Recorded] = []
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        recorded += _record_chunk(connection, rows[start : start + ROWS_PER_STATEMENT])
    return recorded


def _record_chunk(
    connection: sqlite3.Connection, rows: Sequence[NotificationRow]
) -> list[Recorded]:
    keys = [(row[0], row[1]) for row in rows]
    stored = _ids_of(connection, set(keys))
    fresh: dict[tuple[str, str], NotificationRow] = {}
    for key, row in zip(keys, rows, strict=True):
        if key not in stored and key not in fresh:
            fresh[key] = row
    ids = stored
    if fresh:
        marks = ", ".join([_ROW_MARKS] * len(fresh))
        connection.execute(
            f"INSERT INTO notifications ({_INSERT_COLUMNS}) VALUES {marks}",  # noqa: S608
            [value for row in fresh.values() for value in row],
        )
        ids = {**stored, **_ids_of(connection, set(fresh))}
    recorded: list[Recorded] = []
    for key in keys:
        first = fresh.pop(key, None) is not None
        recorded.append((ids[key], not first))
    return recorded


def _ids_of(
    connection: sqlite3.Connection, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The ids of those keys that are stored, in one result row (one step, not one per key)."""
    found = connection.execute(
        ids_query(len(keys)), [part for key in keys for part in key]
    ).fetchone()[0]
    return {(app_id, dedupe_key): ident for app_id, dedupe_key, ident in json.loads(found)}


def ids_query(count: int) -> str:
    """``count`` (app_id, dedupe_key) pairs -> one JSON row of [app_id, dedupe_key, id].

    A join on the keys as a VALUES table searches the unique index once per key; the same test
    written as ``(app_id, dedupe_key) IN (VALUES ...)`` scans the whole index.
    """
    marks = ", ".join(["(?, ?)"] * count)
    return (
        "SELECT json_group_array(json_array(n.app_id, n.dedupe_key, n.id)) "  # noqa: S608
        f"FROM (VALUES {marks}) AS k JOIN notifications AS n "
        "ON n.app_id = k.column1 AND n.dedupe_key = k.column2"
    )


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
