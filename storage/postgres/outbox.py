"""Outbox writes for the PostgreSQL store. Every function runs inside one ``transact`` transaction.

``reserve`` is spend-once across processes: it locks the recipients' projection rows, checks
consent (``storage.sending``), appends ``spend`` and inserts the outbox row in one transaction,
so of any number of concurrent sends against one credit exactly one finds it. A send with a
``weekly_limit`` first takes a transaction advisory lock on (app, channel), so that concurrent
sends on any replica count each other's committed rows and none exceeds the limit. The unique
(app_id, idempotency_key) settles two requests racing on one key: the loser's insert finds the
winner's row and it rolls back whole.

Workers claim with ``FOR UPDATE SKIP LOCKED`` and a lease: a row is leased to exactly one owner,
and only a lease that has run out can be claimed again.
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

import json
from datetime import datetime

from storage.models import (
    AttemptResult,
    MessageRecord,
    ReserveOutcome,
    SendReservation,
)
from storage.postgres.connection import Conn
from storage.postgres.consents import append_events, lock_existing_states, lock_states
from storage.sending import (
    check_limit,
    recipient_key,
    refunds,
    refunds_spends,
    spends,
    split_by_consent,
    window_start,
)
from storage.sql.dialect import POSTGRES
from storage.sql.outbox import MESSAGE_COLUMNS, MESSAGE_NAMES, OUTBOX
from storage.sql.outbox_rows import finish_values, message_from_row, new_message_row
from storage.sql.statements import statements_for
from storage.timecodec import to_millis

SQL = statements_for(POSTGRES).outbox
_INSERT_ONCE = POSTGRES.render(
    f"{OUTBOX.insert_message} "
    f"ON CONFLICT (app_id, idempotency_key) DO NOTHING RETURNING {MESSAGE_COLUMNS}"
)
_CLAIM = POSTGRES.render(
    "WITH due AS (SELECT id FROM messages WHERE status IN ('pending', 'queued') "
    "AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?) "
    "ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED) "
    "UPDATE messages AS m SET lease_owner = ?, lease_until = ? FROM due WHERE m.id = due.id "
    f"RETURNING {', '.join('m.' + name for name in MESSAGE_NAMES)}"
)
_ABANDON = POSTGRES.render(
    "UPDATE messages SET status = 'unknown', lease_owner = NULL, lease_until = NULL, "
    "last_error = 'the attempt was interrupted; the platform may have delivered it', "
    "updated_at = ? WHERE status = 'sending' AND lease_until < ? RETURNING id"
)
_LIMIT_LOCK = POSTGRES.render(
    "SELECT pg_advisory_xact_lock(hashtextextended('subgate.limit:' || ?, 0))"
)


class KeyTaken(Exception):
    """Another transaction owns this idempotency key: roll back and answer from its row."""


async def reserve(
    connection: Conn, reservation: SendReservation, *, begin: bool = False
) -> ReserveOutcome:
    """Raises ``KeyTaken`` when the key turns out to be used, after the consent rows were locked."""
    r = reservation
    if r.weekly_limit is not None:  # before any row lock: limit holders queue up here first
        await connection.execute(_LIMIT_LOCK, json.dumps([r.app_id, r.channel]))
    keys = {user_id: recipient_key(r, user_id) for user_id in r.candidates}
    lock = lock_existing_states if r.consent_mode == "split" else lock_states
    locked = await lock(connection, keys.values())
    states = {user_id: locked[key] for user_id, key in keys.items() if key in locked}
    # Under the locks: a request with this key that held them before us has committed by now.
    if await connection.fetchrow(SQL.message_of_key, r.app_id, r.idempotency_key) is not None:
        raise KeyTaken
    allowed, skipped = split_by_consent(r, states)
    if r.weekly_limit is not None:
        since = to_millis(window_start(r))
        rows = await connection.fetch(SQL.created_since, r.app_id, r.channel, since)
        check_limit(r, [row[0] for row in rows])
    spent = spends(r, allowed, states)
    await append_events(connection, spent, to_millis(r.created_at), known=locked)
    row = await connection.fetchrow(
        _INSERT_ONCE, *new_message_row(r, allowed, skipped, begun=begin)
    )
    if row is None:  # the key was taken meanwhile by a send for another user or template
        raise KeyTaken
    return ReserveOutcome(message=message_from_row(row), replayed=False, begun=begin)


async def begin_attempt(
    connection: Conn, message_id: str, owner: str, now: datetime, lease_until: datetime
) -> MessageRecord | None:
    """Mark an attempt as in flight (committed before the call), if this owner holds the row."""
    row = await connection.fetchrow(
        SQL.begin_attempt, to_millis(lease_until), to_millis(now), message_id, owner
    )
    return None if row is None else message_from_row(row)


async def finish_attempt(
    connection: Conn, message_id: str, result: AttemptResult, now: datetime
) -> MessageRecord:
    """Settle the attempt in flight; a definite failure refunds its credit, once. The update
    changes only a message still in flight (it waits for, then re-reads, a row another
    transaction is settling), so of two finishes one changes it and the other reads it."""
    status, params = finish_values(message_id, result, now)
    row = await connection.fetchrow(SQL.finish_attempt, *params)
    if row is None:  # settled already (or abandoned): no change
        existing = await connection.fetchrow(SQL.message_by_id, message_id)
        if existing is None:
            raise KeyError(message_id)
        return message_from_row(existing)
    message = message_from_row(row)
    if refunds_spends(status):  # each recipient's spend is given back, after it in the log
        keys = {user_id: recipient_key(message, user_id) for user_id in message.allowed}
        locked = await lock_states(connection, keys.values())
        states = {user_id: locked[key] for user_id, key in keys.items()}
        await append_events(connection, refunds(message, states, now), to_millis(now), known=locked)
    return message


async def claim_due(
    connection: Conn, owner: str, now: datetime, lease_until: datetime, limit: int
) -> list[MessageRecord]:
    """Lease due messages to ``owner``: pending or queued, due, and not leased by a live owner.

    Rows another worker is claiming right now are skipped, not waited for.
    """
    at = to_millis(now)
    rows = await connection.fetch(_CLAIM, at, at, limit, owner, to_millis(lease_until))
    claimed = [message_from_row(row) for row in rows]
    return sorted(claimed, key=lambda m: (m.next_attempt_at, m.id))


async def abandon_in_flight(connection: Conn, now: datetime) -> list[str]:
    """Attempts whose owner died mid-call: the platform may have delivered, so never retry."""
    at = to_millis(now)
    return sorted(row[0] for row in await connection.fetch(_ABANDON, at, at))
