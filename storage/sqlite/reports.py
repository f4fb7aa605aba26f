"""Subscribe reports for the SQLite store: kept and applied once per (app, idempotency key).

Runs on the writer thread, which is alone: a report's key is looked up before it is inserted,
and nothing can take the key in between.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from storage.models import ConsentEvent, ReportAnswer, ReportOutcome, SubscribeReport
from storage.sql.dialect import SQLITE
from storage.sql.notification_rows import replayed_report, report_row
from storage.sql.statements import statements_for
from storage.sqlite.consents import append_events
from storage.timecodec import to_millis

SQL = statements_for(SQLITE).notifications


def record(
    connection: sqlite3.Connection,
    report: SubscribeReport,
    events: Sequence[ConsentEvent],
    answer: ReportAnswer,
) -> ReportOutcome:
    """As ``Store.record_subscribe_report`` says."""
    seen = connection.execute(SQL.report_of_key, (report.app_id, report.idempotency_key))
    if (row := seen.fetchone()) is not None:
        return replayed_report(row, report)
    report_id = connection.execute(SQL.insert_report, report_row(report)).lastrowid
    assert report_id is not None
    outcome = answer(report_id, append_events(connection, events, to_millis(report.received_at)))
    connection.execute(SQL.set_report_outcome, (outcome, report_id))
    return ReportOutcome(report_id=report_id, replayed=False, conflict=False, outcome=outcome)
