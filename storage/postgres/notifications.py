"""Notification and subscribe-report SQL for the PostgreSQL store (inside ``transact``).

Both are idempotent through a unique constraint: ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
inserts the row or, when another transaction holds the key, waits for it to commit and inserts
nothing. Only the inserting transaction appends the consent events, so they are applied once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from storage.models import (
    ConsentEvent,
    ConsentState,
    NotificationRecord,
    RecordOutcome,
    ReportOutcome,
    StoredNotification,
    SubscribeReport,
)
from storage.postgres.connection import Conn
from storage.postgres.consents import append_events
from storage.timecodec import from_millis, optional_datetime, optional_millis, to_millis

COLUMNS = (
    "id, app_id, dedupe_key, kind, handler, raw_body, charset, sign_type, rule, "
    "key_label, occurred_at, received_at"
)
_INSERT_NOTIFICATION = (
    f"INSERT INTO notifications ({COLUMNS.removeprefix('id, ')}) "  # noqa: S608 (constant)
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
    "ON CONFLICT (app_id, dedupe_key) DO NOTHING RETURNING id"
)
_INSERT_REPORT = (
    "INSERT INTO subscribe_reports (app_id, user_id, idempotency_key, body_sha256, body, "
    "received_at, outcome) VALUES ($1, $2, $3, $4, $5, $6, '') "
    "ON CONFLICT (app_id, idempotency_key) DO NOTHING RETURNING id"
)


async def record(
    connection: Conn, notification: NotificationRecord, events: Sequence[ConsentEvent]
) -> RecordOutcome:
    n = notification
    inserted = await connection.fetchval(
        _INSERT_NOTIFICATION,
        n.app_id,
        n.dedupe_key,
        n.kind,
        n.handler,
        n.raw_body,
        n.charset,
        n.sign_type,
        n.rule,
        n.key_label,
        optional_millis(n.occurred_at),
        to_millis(n.received_at),
    )
    if inserted is None:  # stored before, or by a transaction that committed meanwhile
        existing = await connection.fetchval(
            "SELECT id FROM notifications WHERE app_id = $1 AND dedupe_key = $2",
            n.app_id,
            n.dedupe_key,
        )
        return RecordOutcome(notification_id=existing, duplicate=True)
    await append_events(connection, events, to_millis(n.received_at))
    return RecordOutcome(notification_id=inserted, duplicate=False)


async def record_report(
    connection: Conn,
    report: SubscribeReport,
    events: Sequence[ConsentEvent],
    answer: Callable[[int, list[ConsentState]], str],
) -> ReportOutcome:
    r = report
    report_id = await connection.fetchval(
        _INSERT_REPORT,
        r.app_id,
        r.user_id,
        r.idempotency_key,
        r.body_sha256,
        r.body,
        to_millis(r.received_at),
    )
    if report_id is None:  # the key was used before (or by a transaction just committed)
        seen = await connection.fetchrow(
            "SELECT id, body_sha256, outcome FROM subscribe_reports "
            "WHERE app_id = $1 AND idempotency_key = $2",
            r.app_id,
            r.idempotency_key,
        )
        assert seen is not None
        conflict = seen["body_sha256"] != r.body_sha256
        return ReportOutcome(
            report_id=seen["id"], replayed=True, conflict=conflict, outcome=seen["outcome"]
        )
    states = await append_events(connection, events, to_millis(r.received_at))
    outcome = answer(report_id, states)
    await connection.execute(
        "UPDATE subscribe_reports SET outcome = $1 WHERE id = $2", outcome, report_id
    )
    return ReportOutcome(report_id=report_id, replayed=False, conflict=False, outcome=outcome)


def stored_notification(row: asyncpg.Record) -> StoredNotification:
    return StoredNotification(
        id=row["id"],
        app_id=row["app_id"],
        dedupe_key=row["dedupe_key"],
        kind=row["kind"],
        handler=row["handler"],
        raw_body=bytes(row["raw_body"]),
        charset=row["charset"],
        sign_type=row["sign_type"],
        rule=row["rule"],
        key_label=row["key_label"],
        occurred_at=optional_datetime(row["occurred_at"]),
        received_at=from_millis(row["received_at"]),
    )
