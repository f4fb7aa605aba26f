"""Notification, subscribe-report and refusal SQL for the SQLite store (run on the writer thread).

Each notification is one ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` job without a
savepoint. Writing a batch's notifications with one multi-row INSERT instead was measured
(bench/README.md): it cut the writer thread's own time per row by half in isolation, yet lowered
end-to-end intake by about 15 %, because binding hundreds of parameters and decoding the id
lookups holds the GIL in long stretches that the event loop thread then waits out.
"""

from __future__ import annotations

import sqlite3
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
