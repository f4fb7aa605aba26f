"""Statements of the operator console's reads: keyset pages newest first, bucketed counts, and
what one notification caused.

Every page reads an index in order and stops at its limit (``0008_console.sql`` adds the
indexes): a cursor is the (time, id) of the last row shown, so a page never counts past rows.
Each optional filter is its own statement, not ``? IS NULL OR ...``, so that the planner of
either database sees the index that filter can use.
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from dataclasses import dataclass

from storage.sql.events import DELIVERY_COLUMNS
from storage.sql.ledger import EVENT_COLUMNS
from storage.sql.notifications import NOTIFICATION_COLUMNS
from storage.sql.outbox import MESSAGE_COLUMNS

# The range of a page: received within [since, until], older than the cursor, and not older
# than the (time, id) it goes down to.
_RANGE = (
    "FROM notifications WHERE app_id = ? AND received_at >= ? AND received_at <= ? "
    "AND (received_at < ? OR id < ?) AND (received_at > ? OR id >= ?)"
)
_NOTIFICATIONS = f"SELECT {NOTIFICATION_COLUMNS} {_RANGE} AND dedupe_key LIKE ? ESCAPE '!'"
_NOTIFICATIONS_ORDER = " ORDER BY received_at DESC, id DESC LIMIT ?"
# The row ``?`` rows down the range, in index order (skipped over the index, never the table):
# as far as a text search reads.
_SCAN_END = f"SELECT received_at, id {_RANGE}"
_SCAN_END_ORDER = " ORDER BY received_at DESC, id DESC LIMIT 1 OFFSET ?"
_MESSAGES = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE app_id = ? "
    "AND created_at <= ? AND (created_at < ? OR id < ?)"
)
_MESSAGES_ORDER = " ORDER BY created_at DESC, id DESC LIMIT ?"


@dataclass(frozen=True, slots=True)
class ConsoleStatements:
    """Each console read, neutral (``?``) until a dialect renders it."""

    notifications: str = _NOTIFICATIONS + _NOTIFICATIONS_ORDER
    notifications_of_kind: str = _NOTIFICATIONS + " AND kind = ?" + _NOTIFICATIONS_ORDER
    scan_end: str = _SCAN_END + _SCAN_END_ORDER
    scan_end_of_kind: str = _SCAN_END + " AND kind = ?" + _SCAN_END_ORDER
    # Buckets are whole multiples of the width in milliseconds since the epoch.
    notification_buckets: str = (
        "SELECT received_at / ?, count(*) FROM notifications "
        "WHERE app_id = ? AND received_at >= ? GROUP BY 1 ORDER BY 1"
    )
    refusal_buckets: str = (
        "SELECT minute * 60000 / ?, sum(count) FROM refusal_minutes "
        "WHERE app_id = ? AND minute >= ? GROUP BY 1 ORDER BY 1"
    )
    messages: str = _MESSAGES + _MESSAGES_ORDER
    messages_of_status: str = _MESSAGES + " AND status = ?" + _MESSAGES_ORDER
    messages_of_channel: str = _MESSAGES + " AND channel = ?" + _MESSAGES_ORDER
    messages_of_both: str = _MESSAGES + " AND status = ? AND channel = ?" + _MESSAGES_ORDER
    messages_of_user: str = (
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE app_id = ? AND user_id = ? "
        "ORDER BY created_at DESC, id DESC LIMIT ?"
    )
    # Totals kept by triggers (0010_message_counts.sql); PostgreSQL spreads each over rows.
    message_counts_of_app: str = (
        "SELECT channel, status, sum(count) FROM message_counts WHERE app_id = ? "
        "GROUP BY 1, 2 HAVING sum(count) > 0"
    )
    # The consent events a life-account notification caused name it as their evidence.
    consent_events_of_notification: str = (
        f"SELECT {EVENT_COLUMNS}, id, recorded_at FROM consent_events "
        "WHERE app_id = ? AND evidence = ?"
    )
    message_attempts: str = (
        "SELECT number, started_at, finished_at, status, platform_code, platform_msg, "
        "sub_code, sub_msg, error FROM message_attempts WHERE message_id = ? ORDER BY number"
    )
    deliveries_of_notification: str = (
        f"SELECT {DELIVERY_COLUMNS}, e.type, a.attempted_at, a.status_code, a.latency_ms, "
        "a.error FROM events AS e JOIN deliveries AS d ON d.event_id = e.id "
        "LEFT JOIN delivery_attempts AS a ON a.delivery_id = d.id "
        "WHERE e.notification_id = ? ORDER BY d.id DESC, a.attempted_at, a.id"
    )


CONSOLE = ConsoleStatements()
