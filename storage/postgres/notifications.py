"""Subscribe-report writes for the PostgreSQL store (inside ``transact``); notifications are
written in batches (``batches``, ``intake_rows``).

A report is idempotent through a unique constraint: ``INSERT ... ON CONFLICT DO NOTHING
RETURNING`` inserts the row or, when another transaction holds the key, waits for it to commit
and inserts nothing. Only the inserting transaction appends the consent events, so they are
applied once.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.models import (
    ConsentEvent,
    ReportAnswer,
    ReportOutcome,
    SubscribeReport,
)
from storage.postgres.connection import Conn
from storage.postgres.consents import append_events
from storage.sql.dialect import POSTGRES
from storage.sql.notification_rows import replayed_report, report_row
from storage.sql.notifications import NOTIFICATIONS
from storage.sql.statements import statements_for
from storage.timecodec import to_millis

SQL = statements_for(POSTGRES).notifications
_INSERT_REPORT_ONCE = POSTGRES.render(
    f"{NOTIFICATIONS.insert_report} ON CONFLICT (app_id, idempotency_key) DO NOTHING RETURNING id"
)


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
