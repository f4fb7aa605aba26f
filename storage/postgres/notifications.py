"""Notification and subscribe-report writes for the PostgreSQL store (inside ``transact``).

Both are idempotent through a unique constraint: ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
inserts the row or, when another transaction holds the key, waits for it to commit and inserts
nothing. Only the inserting transaction appends the consent events, so they are applied once.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.models import (
    ConsentEvent,
    NotificationRecord,
    RecordOutcome,
    ReportAnswer,
    ReportOutcome,
    SubscribeReport,
)
from storage.postgres.connection import Conn
from storage.postgres.consents import append_events
from storage.sql.dialect import POSTGRES
from storage.sql.notification_rows import notification_row, replayed_report, report_row
from storage.sql.notifications import NOTIFICATIONS
from storage.sql.statements import statements_for
from storage.timecodec import to_millis

SQL = statements_for(POSTGRES).notifications
_INSERT_REPORT_ONCE = POSTGRES.render(
    f"{NOTIFICATIONS.insert_report} ON CONFLICT (app_id, idempotency_key) DO NOTHING RETURNING id"
)


async def record(
    connection: Conn, notification: NotificationRecord, events: Sequence[ConsentEvent]
) -> RecordOutcome:
    """As ``Store.record_notification`` says."""
    row = notification_row(notification)
    inserted = await connection.fetchval(SQL.insert_notification, *row)
    if inserted is None:  # stored before, or by a transaction that committed meanwhile
        existing = await connection.fetchval(SQL.id_of_notification, *row[:2])
        return RecordOutcome(notification_id=existing, duplicate=True)
    await append_events(connection, events, to_millis(notification.received_at))
    return RecordOutcome(notification_id=inserted, duplicate=False)


async def record_report(
    connection: Conn,
    report: SubscribeReport,
    events: Sequence[ConsentEvent],
    answer: ReportAnswer,
) -> ReportOutcome:
    """As ``Store.record_subscribe_report`` says."""
    report_id = await connection.fetchval(_INSERT_REPORT_ONCE, *report_row(report))
    if report_id is None:  # the key was used before (or by a transaction just committed)
        seen = await connection.fetchrow(SQL.report_of_key, report.app_id, report.idempotency_key)
        assert seen is not None
        return replayed_report(seen, report)
    states = await append_events(connection, events, to_millis(report.received_at))
    outcome = answer(report_id, states)
    await connection.execute(SQL.set_report_outcome, outcome, report_id)
    return ReportOutcome(report_id=report_id, replayed=False, conflict=False, outcome=outcome)
