"""Notification, subscribe-report and refusal rows, both ways."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from storage.models import (
    NotificationRecord,
    RefusalCount,
    ReportOutcome,
    StoredNotification,
    SubscribeReport,
)
from storage.sql.rows import Row
from storage.timecodec import from_millis, optional_datetime, optional_millis, to_millis

NotificationRow = tuple[Any, ...]  # the parameters of ``insert_notification``


def notification_row(record: NotificationRecord) -> NotificationRow:
    """A notification in ``INSERT_COLUMNS`` order."""
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


def stored_notification(row: Row) -> StoredNotification:
    """A row of ``NOTIFICATION_COLUMNS``."""
    return StoredNotification.from_stored(  # as storage/sql/event_rows.py says why
        {
            "id": row[0],
            "app_id": row[1],
            "dedupe_key": row[2],
            "kind": row[3],
            "handler": row[4],
            "raw_body": bytes(row[5]),
            "charset": row[6],
            "sign_type": row[7],
            "rule": row[8],
            "key_label": row[9],
            "occurred_at": optional_datetime(row[10]),
            "received_at": from_millis(row[11]),
        }
    )


def report_row(report: SubscribeReport) -> tuple[Any, ...]:
    """The parameters of ``insert_report``."""
    return (
        report.app_id,
        report.user_id,
        report.idempotency_key,
        report.body_sha256,
        report.body,
        to_millis(report.received_at),
    )


def replayed_report(seen: Row, report: SubscribeReport) -> ReportOutcome:
    """The answer to a report whose key was used before: the first answer again, or a conflict
    when the body differs. ``seen`` is a row of ``report_of_key``."""
    conflict = seen[1] != report.body_sha256
    return ReportOutcome(report_id=seen[0], replayed=True, conflict=conflict, outcome=seen[2])


def refusal_rows(counts: Mapping[tuple[str, str], int], at: datetime) -> list[tuple[Any, ...]]:
    """The parameters of ``add_refusals`` for each counter that grew, in key order (so that two
    PostgreSQL processes adding to the same counters lock them in the same order)."""
    return [(app, reason, n, to_millis(at)) for (app, reason), n in sorted(counts.items()) if n]


def refusal_count(row: Row) -> RefusalCount:
    """A row of ``refusal_counts``."""
    return RefusalCount(app_id=row[0], reason=row[1], count=row[2], last_at=from_millis(row[3]))
