"""Statements of the event log and its deliveries: the feed, the fan-out, claims and attempts.

Events are written by the migrations' triggers, never here. Every read of the log names it
``events AS e``; the feed and the fan-out take only settled events (``{settled}``) in (txid, id)
order, after a position given as two parameters (``{after}``), both spelled by the dialect
(``dialect``). A replay reads up to a destination's cursor, which only ever stood on a settled
event, so whatever is behind it has committed already. A delivery is one event on its way to one
destination, unique per (destination, event): the fan-out and a replay insert it ``ON
CONFLICT``, so doing either twice makes nothing twice.
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from dataclasses import dataclass

from storage.models import EventType
from storage.sql.dialect import BOUND_TEXT, marks
from storage.sql.notifications import NOTIFICATION_COLUMNS

# An event with its notification, if any (NULLs once pruned): what ``stored_event`` decodes.
EVENT_COLUMNS = "e.id, e.txid, e.type, e.app_id, e.user_id, e.kind, e.created_at, e.data, " + (
    ", ".join(f"n.{name}" for name in NOTIFICATION_COLUMNS.split(", "))
)
EVENT_FROM = "events AS e LEFT JOIN notifications AS n ON n.id = e.notification_id"
# What the fan-out and a replay read of an event: its position, its head and its user.
HEAD_COLUMNS = "e.txid, e.id, e.type, e.app_id, e.kind, e.user_id"
DELIVERY_COLUMNS = (
    "d.id, d.destination, d.event_id, d.app_id, d.user_id, d.status, d.attempts, "
    "d.next_attempt_at, d.retry_since, d.last_status, d.last_error, d.created_at, d.updated_at, "
    "d.delivered_at"
)
# The feed's types, as this many parameters (unused ones NULL, which match nothing): one
# statement text for any choice of types.
TYPE_SLOTS = len(EventType)

_NEW_DELIVERY = (
    "INSERT INTO deliveries (destination, event_txid, event_id, app_id, user_id, status, "
    "attempts, next_attempt_at, retry_since, created_at, updated_at) "
    f"VALUES (?, ?, ?, ?, ?, 'pending', 0, {marks(4)}) ON CONFLICT (destination, event_id) "
)


def _afresh(now: str) -> str:
    """A replayed delivery: due at ``now``, its give-up time counted afresh from it, the lease
    dropped (an attempt in flight then finishes as a lost lease); attempts and errors kept."""
    return (
        f"status = 'pending', next_attempt_at = {now}, retry_since = {now}, lease_owner = NULL, "
        f"lease_until = NULL, delivered_at = NULL, updated_at = {now}"
    )


# A pending delivery is due once its time has come and no live lease holds it, unless an
# earlier event of the same (app, user) is still pending for the destination (per-user order;
# the partial index ``deliveries_of_user`` answers that).
_DUE = (
    "d.destination = ? AND d.status = 'pending' AND d.next_attempt_at <= ? "
    "AND (d.lease_until IS NULL OR d.lease_until < ?) AND (d.user_id IS NULL OR NOT EXISTS ("
    "SELECT 1 FROM deliveries AS p WHERE p.destination = d.destination "
    "AND p.app_id = d.app_id AND p.user_id = d.user_id AND p.status = 'pending' "
    "AND (p.event_txid, p.event_id) < (d.event_txid, d.event_id)))"
)
# Failing (pending after a failed attempt) or dead: where a destination's last error is read.
_FAILED = "(f.status = 'dead' OR (f.status = 'pending' AND f.attempts > 0))"
_TOTAL = (
    "(SELECT CAST(coalesce(sum(n.count), 0) AS BIGINT) FROM delivery_counts AS n "
    "WHERE n.destination = c.destination AND n.state = '{state}')"
)
_LAST_FAILED = (
    "FROM deliveries AS f WHERE f.destination = c.destination AND "
    f"{_FAILED} ORDER BY f.updated_at DESC, f.id DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class EventStatements:
    """Each statement of the event log and deliveries, neutral (``?``) until rendered."""

    events_of_app: str = (
        f"SELECT {EVENT_COLUMNS} FROM {EVENT_FROM} WHERE e.app_id = ? AND {{after}} "
        f"AND {{settled}} AND e.type IN ({marks(TYPE_SLOTS)}) ORDER BY e.txid, e.id LIMIT ?"
    )
    event_by_id: str = f"SELECT {EVENT_COLUMNS} FROM {EVENT_FROM} WHERE e.id = ?"
    last_position: str = (
        "SELECT e.txid, e.id FROM events AS e WHERE {settled} "
        "ORDER BY e.txid DESC, e.id DESC LIMIT 1"
    )
    cursor_of: str = "SELECT txid, event_id FROM destination_cursors WHERE destination = ?"
    insert_cursor: str = (
        "INSERT INTO destination_cursors (destination, txid, event_id) VALUES (?, ?, ?) "
        "ON CONFLICT (destination) DO NOTHING"
    )
    move_cursor: str = "UPDATE destination_cursors SET txid = ?, event_id = ? WHERE destination = ?"
    heads_after: str = (
        f"SELECT {HEAD_COLUMNS} FROM events AS e WHERE {{after}} AND {{settled}} "
        "ORDER BY e.txid, e.id LIMIT ?"
    )
    heads_since: str = (
        f"SELECT {HEAD_COLUMNS} FROM events AS e WHERE e.created_at >= ? "
        "AND (e.txid, e.id) <= (?, ?) ORDER BY e.txid, e.id"
    )
    insert_delivery: str = f"{_NEW_DELIVERY}DO NOTHING"
    replay_or_insert_delivery: str = (
        f"{_NEW_DELIVERY}DO UPDATE SET {_afresh('excluded.created_at')}"
    )
    replay_delivery: str = (
        f"UPDATE deliveries SET {_afresh('?')} WHERE destination = ? AND event_id = ?"
    )
    due_deliveries: str = (
        f"SELECT {DELIVERY_COLUMNS}, {EVENT_COLUMNS} FROM deliveries AS d "
        "JOIN events AS e ON e.id = d.event_id "
        "LEFT JOIN notifications AS n ON n.id = e.notification_id "
        f"WHERE {_DUE} ORDER BY d.event_txid, d.event_id LIMIT ?"
    )
    lease_delivery: str = "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE id = ?"
    insert_attempt: str = (
        "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, latency_ms, "
        f"error) VALUES ({marks(5)})"
    )
    apply_verdict: str = (
        "UPDATE deliveries SET status = ?, next_attempt_at = coalesce(?, next_attempt_at), "
        "delivered_at = ?, attempts = attempts + 1, last_status = ?, last_error = ?, "
        "updated_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?"
    )
    # Every destination the fan-out knows (a cursor), with what waits, fails and died: the totals
    # kept with every change (0011_delivery_counts: PostgreSQL's triggers, the SQLite writer's
    # jobs), the oldest waiting and the latest failure each
    # read through a partial index, so the answer costs the same however long the backlog.
    backlogs: str = (
        f"SELECT c.destination, {_TOTAL.format(state='pending')}, "
        f"{_TOTAL.format(state='failing')}, {_TOTAL.format(state='dead')}, "
        "(SELECT min(p.created_at) FROM deliveries AS p WHERE p.destination = c.destination "
        "AND p.status = 'pending'), "
        f"(SELECT f.last_error {_LAST_FAILED}), (SELECT f.updated_at {_LAST_FAILED}) "
        "FROM destination_cursors AS c ORDER BY c.destination"
    )
    # One page of a destination's deliveries (newest first, before an id) with their events'
    # types and their attempts, one row per attempt: one statement, so one snapshot. The state
    # as ``BOUND_TEXT``: the pending and failed deliveries' partial indexes name states.
    histories: str = (
        f"SELECT {DELIVERY_COLUMNS}, e.type, a.attempted_at, a.status_code, a.latency_ms, "
        "a.error FROM (SELECT * FROM deliveries AS page WHERE page.destination = ? "
        f"AND page.status = {BOUND_TEXT} AND page.attempts >= ? AND page.id < ? "
        "ORDER BY page.id DESC LIMIT ?) AS d JOIN events AS e ON e.id = d.event_id "
        "LEFT JOIN delivery_attempts AS a ON a.delivery_id = d.id "
        "ORDER BY d.id DESC, a.attempted_at, a.id"
    )


EVENTS = EventStatements()
