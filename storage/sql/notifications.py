"""Statements of notifications, subscribe reports and refusal counters.

A notification is stored once per (app, dedupe key) by ``INSERT ... ON CONFLICT DO NOTHING
RETURNING id``: no row back means the key was stored before. SQLite's writer also stores chunks of
notifications with one statement of its own (``storage.sqlite.notification_batches``).
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from dataclasses import dataclass

from storage.sql.dialect import marks

NOTIFICATION_COLUMNS = (
    "id, app_id, dedupe_key, kind, handler, raw_body, charset, sign_type, rule, "
    "key_label, occurred_at, received_at"
)
INSERT_COLUMNS = NOTIFICATION_COLUMNS.removeprefix("id, ")  # the id is the database's to give


@dataclass(frozen=True, slots=True)
class NotificationStatements:
    """Each statement of notifications, reports and refusals, neutral (``?``) until rendered."""

    insert_notification: str = (
        f"INSERT INTO notifications ({INSERT_COLUMNS}) VALUES ({marks(11)}) "
        "ON CONFLICT (app_id, dedupe_key) DO NOTHING RETURNING id"
    )
    id_of_notification: str = "SELECT id FROM notifications WHERE app_id = ? AND dedupe_key = ?"
    notification_of_key: str = (
        f"SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE app_id = ? AND dedupe_key = ?"
    )
    # A notification whose event still waits to be delivered somewhere is kept: the delivery
    # will read it. The notifications still owed are a table of their own here: SQLite builds
    # it once (a DISTINCT subquery is not merged into the correlated one, which SQLite would
    # run again for every row) and PostgreSQL anti-joins it.
    prune_notifications: str = (
        "DELETE FROM notifications WHERE occurred_at IS NOT NULL AND occurred_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM (SELECT DISTINCT e.notification_id AS id "
        "FROM deliveries AS d JOIN events AS e ON e.id = d.event_id "
        "WHERE d.status = 'pending') AS waited WHERE waited.id = notifications.id)"
    )
    count_notifications: str = "SELECT count(*) FROM notifications"
    count_notifications_of_app: str = "SELECT count(*) FROM notifications WHERE app_id = ?"
    insert_report: str = (
        "INSERT INTO subscribe_reports (app_id, user_id, idempotency_key, body_sha256, body, "
        f"received_at, outcome) VALUES ({marks(6)}, '')"
    )
    report_of_key: str = (
        "SELECT id, body_sha256, outcome FROM subscribe_reports "
        "WHERE app_id = ? AND idempotency_key = ?"
    )
    set_report_outcome: str = "UPDATE subscribe_reports SET outcome = ? WHERE id = ?"
    add_refusals: str = (
        f"INSERT INTO refusal_counts (app_id, reason, count, last_at) VALUES ({marks(4)}) "
        "ON CONFLICT (app_id, reason) DO UPDATE SET count = refusal_counts.count + excluded.count, "
        "last_at = {greatest}(refusal_counts.last_at, excluded.last_at)"
    )
    refusal_counts: str = (
        "SELECT app_id, reason, count, last_at FROM refusal_counts ORDER BY app_id, reason"
    )


NOTIFICATIONS = NotificationStatements()
