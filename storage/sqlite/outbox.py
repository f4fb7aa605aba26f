"""Outbox writes for the SQLite store. Every function runs inside a writer job's transaction.

``reserve`` is the spend-once guarantee: the consent check, the send limit (``storage.sending``),
the ``spend`` events and the outbox row commit together on the single writer, so of any number
of concurrent sends against one credit exactly one finds it, and none exceeds a limit.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from storage.models import AttemptResult, MessageRecord, ReserveOutcome, SendReservation
from storage.sending import (
    check_limit,
    recipient_key,
    refunds,
    refunds_spends,
    replay,
    spends,
    split_by_consent,
    window_start,
)
from storage.sql.dialect import SQLITE
from storage.sql.outbox_rows import finish_values, message_from_row, new_message_row
from storage.sql.statements import statements_for
from storage.sqlite.consents import append_events, load_state
from storage.timecodec import to_millis

SQL = statements_for(SQLITE).outbox
# The writer is alone: due messages are read, then leased one by one (no SKIP LOCKED to need).
_DUE = (
    "SELECT id FROM messages WHERE status IN ('pending', 'queued') AND next_attempt_at <= ? "
    "AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at LIMIT ?"
)
_LEASE = "UPDATE messages SET lease_owner = ?, lease_until = ? WHERE id = ?"
_IN_FLIGHT_SINCE = "SELECT id FROM messages WHERE status = 'sending' AND lease_until < ?"
_ABANDON = (
    "UPDATE messages SET status = 'unknown', lease_owner = NULL, lease_until = NULL, "
    "last_error = 'the attempt was interrupted; the platform may have delivered it', "
    "updated_at = ? WHERE id = ?"
)


def reserve(
    connection: sqlite3.Connection, reservation: SendReservation, *, begin: bool = False
) -> ReserveOutcome:
    """As ``Store.reserve_send`` says; every refusal comes before the first write."""
    r = reservation
    existing = connection.execute(SQL.message_of_key, (r.app_id, r.idempotency_key)).fetchone()
    if existing is not None:
        return replay(message_from_row(existing), r)
    states = {
        user_id: load_state(connection, recipient_key(r, user_id)) for user_id in r.candidates
    }
    allowed, skipped = split_by_consent(r, states)
    if r.weekly_limit is not None:
        since = (r.app_id, r.channel, to_millis(window_start(r)))
        check_limit(r, [row[0] for row in connection.execute(SQL.created_since, since)])
    append_events(connection, spends(r, allowed, states), to_millis(r.created_at), known=states)
    row = new_message_row(r, allowed, skipped, begun=begin)
    connection.execute(SQL.insert_message, row)
    return ReserveOutcome(message=message_from_row(row), replayed=False, begun=begin)


def begin_attempt(
    connection: sqlite3.Connection,
    message_id: str,
    owner: str,
    now: datetime,
    lease_until: datetime,
) -> MessageRecord | None:
    """Mark an attempt as in flight (committed before the call), if this owner holds the row."""
    params = (to_millis(lease_until), to_millis(now), message_id, owner)
    started = connection.execute(SQL.begin_attempt, params).fetchone()
    return message_from_row(started) if started is not None else None


def finish_attempt(
    connection: sqlite3.Connection, message_id: str, result: AttemptResult, now: datetime
) -> MessageRecord:
    """Settle the attempt in flight; a definite failure refunds each recipient's spend."""
    status, params = finish_values(message_id, result, now)
    finished = connection.execute(SQL.finish_attempt, params).fetchone()
    if finished is None:  # not in flight (finished already): nothing changes
        return get(connection, message_id)
    message = message_from_row(finished)
    if refunds_spends(status):  # it was in flight, so its spends stand: give them back
        keys = {user_id: recipient_key(message, user_id) for user_id in message.allowed}
        states = {user_id: load_state(connection, key) for user_id, key in keys.items()}
        append_events(connection, refunds(message, states, now), to_millis(now), known=states)
    return message


def claim_due(
    connection: sqlite3.Connection, owner: str, now: datetime, lease_until: datetime, limit: int
) -> list[MessageRecord]:
    """Lease due messages to ``owner``: pending or queued, due, and not leased by a live owner."""
    at = to_millis(now)
    ids = [row[0] for row in connection.execute(_DUE, (at, at, limit))]
    for message_id in ids:
        connection.execute(_LEASE, (owner, to_millis(lease_until), message_id))
    return [get(connection, message_id) for message_id in ids]


def abandon_in_flight(connection: sqlite3.Connection, now: datetime) -> list[str]:
    """Attempts whose owner died mid-call: the platform may have delivered, so never retry."""
    at = to_millis(now)
    ids = [row[0] for row in connection.execute(_IN_FLIGHT_SINCE, (at,))]
    for message_id in ids:
        connection.execute(_ABANDON, (at, message_id))
    return ids


def get(connection: sqlite3.Connection, message_id: str) -> MessageRecord:
    """The message of this id; ``KeyError`` when there is none (as on PostgreSQL)."""
    row = connection.execute(SQL.message_by_id, (message_id,)).fetchone()
    if row is None:
        raise KeyError(message_id)
    return message_from_row(row)
