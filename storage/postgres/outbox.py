"""Outbox SQL for the PostgreSQL store. Every function runs inside one ``transact`` transaction.

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

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from storage.errors import IdempotencyMismatch
from storage.jsontext import json_list
from storage.models import (
    AttemptOutcome,
    AttemptResult,
    ConsentAction,
    MessageRecord,
    MessageStatus,
    ReserveOutcome,
    SendReservation,
)
from storage.postgres.connection import Conn
from storage.postgres.consents import (
    Ident,
    append_events,
    lock_existing_states,
    lock_states,
)
from storage.sending import (
    check_limit,
    ledger_event,
    new_message_row,
    not_before,
    split_by_consent,
    window_start,
)
from storage.timecodec import from_millis, optional_datetime, to_millis

COLUMNS = (
    "id, app_id, idempotency_key, request_sha256, channel, user_id, template_id, payload, "
    "status, attempts, next_attempt_at, lease_owner, lease_until, platform_code, platform_msg, "
    "sub_code, sub_msg, last_error, created_at, updated_at, sent_at, recipients, skipped, "
    "warnings, ledger_channel"
)
SELECT_BY_KEY = f"SELECT {COLUMNS} FROM messages WHERE app_id = $1 AND idempotency_key = $2"  # noqa: S608
_INSERT = (
    f"INSERT INTO messages ({COLUMNS}) "  # noqa: S608 (constant)
    f"VALUES ({', '.join(f'${n}' for n in range(1, 26))}) "
    f"ON CONFLICT (app_id, idempotency_key) DO NOTHING RETURNING {COLUMNS}"
)
_BEGIN = (
    "UPDATE messages SET status = 'sending', attempts = attempts + 1, lease_until = $1, "  # noqa: S608
    "updated_at = $2 WHERE id = $3 AND lease_owner = $4 AND status IN ('pending', 'queued') "
    f"RETURNING {COLUMNS}"
)
_FINISH = (
    "UPDATE messages SET status = $1, next_attempt_at = $2, lease_owner = NULL, "  # noqa: S608
    "lease_until = NULL, platform_code = $3, platform_msg = $4, sub_code = $5, sub_msg = $6, "
    f"last_error = $7, updated_at = $8, sent_at = $9 WHERE id = $10 RETURNING {COLUMNS}"
)
_CLAIM = (
    "WITH due AS (SELECT id FROM messages WHERE status IN ('pending', 'queued') "  # noqa: S608
    "AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1) "
    "ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
    "UPDATE messages AS m SET lease_owner = $3, lease_until = $4 FROM due WHERE m.id = due.id "
    f"RETURNING {', '.join('m.' + c.strip() for c in COLUMNS.split(','))}"
)
_ABANDON = (
    "UPDATE messages SET status = 'unknown', lease_owner = NULL, lease_until = NULL, "
    "last_error = 'the attempt was interrupted; the platform may have delivered it', "
    "updated_at = $1 WHERE status = 'sending' AND lease_until < $1 RETURNING id"
)
_LIMIT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('subgate.limit:' || $1, 0))"
_CREATED_SINCE = (
    "SELECT created_at FROM messages WHERE app_id = $1 AND channel = $2 AND created_at > $3"
)
_JSON_LISTS = ("recipients", "skipped", "warnings")
_STATUS_AFTER = {
    AttemptOutcome.SENT: MessageStatus.SENT,
    AttemptOutcome.REJECTED: MessageStatus.FAILED,
    AttemptOutcome.EXHAUSTED: MessageStatus.FAILED,
    AttemptOutcome.RETRY: MessageStatus.QUEUED,
    AttemptOutcome.UNKNOWN: MessageStatus.UNKNOWN,
}


class KeyTaken(Exception):
    """Another transaction owns this idempotency key: roll back and answer from its row."""


def replay(existing: MessageRecord, reservation: SendReservation) -> ReserveOutcome:
    if existing.request_sha256 != reservation.request_sha256:
        raise IdempotencyMismatch("this Idempotency-Key was used with a different message")
    return ReserveOutcome(message=existing, replayed=True)


async def reserve(
    connection: Conn, reservation: SendReservation, *, begin: bool = False
) -> ReserveOutcome:
    """Raises ``KeyTaken`` when the key turns out to be used, after the consent rows were locked."""
    r = reservation
    if r.weekly_limit is not None:  # before any row lock: limit holders queue up here first
        await connection.execute(_LIMIT_LOCK, json.dumps([r.app_id, r.channel]))
    idents: dict[str, Ident] = {
        user_id: (r.app_id, user_id, r.consent_channel, r.template_id) for user_id in r.candidates
    }
    if r.consent_mode == "split":  # never leave empty projection rows for skipped recipients
        locked = await lock_existing_states(connection, idents.values())
    else:
        locked = await lock_states(connection, idents.values())
    states = {user_id: locked[ident] for user_id, ident in idents.items() if ident in locked}
    # Under the locks: a request with this key that held them before us has committed by now.
    if await connection.fetchrow(SELECT_BY_KEY, r.app_id, r.idempotency_key) is not None:
        raise KeyTaken
    allowed, skipped = split_by_consent(r, states)
    if r.weekly_limit is not None:
        since = to_millis(window_start(r))
        created = [
            row[0] for row in await connection.fetch(_CREATED_SINCE, r.app_id, r.channel, since)
        ]
        check_limit(r, created)
    spends = [  # an allowed recipient always has a state: a key without events allows nothing
        ledger_event(r, user_id, ConsentAction.SPEND, not_before(states[user_id], r.created_at))
        for user_id in allowed
    ]
    await append_events(connection, spends, to_millis(r.created_at))
    row = await connection.fetchrow(_INSERT, *new_message_row(r, allowed, skipped, begun=begin))
    if row is None:  # the key was taken meanwhile by a send for another user or template
        raise KeyTaken
    return ReserveOutcome(message=message_from_row(row), replayed=False, begun=begin)


async def begin_attempt(
    connection: Conn, message_id: str, owner: str, now: datetime, lease_until: datetime
) -> MessageRecord | None:
    """Mark an attempt as in flight (committed before the call), if this owner holds the row."""
    row = await connection.fetchrow(
        _BEGIN, to_millis(lease_until), to_millis(now), message_id, owner
    )
    return None if row is None else message_from_row(row)


async def finish_attempt(
    connection: Conn, message_id: str, result: AttemptResult, now: datetime
) -> MessageRecord:
    """Settle the attempt in flight; a definite failure refunds its credit, once."""
    locked = await connection.fetchrow(
        f"SELECT {COLUMNS} FROM messages WHERE id = $1 FOR UPDATE",  # noqa: S608 (constant)
        message_id,
    )
    if locked is None:
        raise KeyError(message_id)
    message = message_from_row(locked)
    if message.status is not MessageStatus.SENDING:  # settled already (or abandoned): no change
        return message
    status = _STATUS_AFTER[result.outcome]
    next_at = result.next_attempt_at if result.outcome is AttemptOutcome.RETRY else now
    row = await connection.fetchrow(
        _FINISH,
        status.value,
        to_millis(next_at or now),
        result.platform_code,
        result.platform_msg,
        result.sub_code,
        result.sub_msg,
        result.error,
        to_millis(now),
        to_millis(now) if status is MessageStatus.SENT else None,
        message_id,
    )
    assert row is not None
    if status is MessageStatus.FAILED:  # each recipient's spend is given back
        idents = {
            user_id: (message.app_id, user_id, message.consent_channel, message.template_id)
            for user_id in message.allowed
        }
        states = await lock_states(connection, idents.values())
        refunds = [
            ledger_event(
                message,
                user_id,
                ConsentAction.REFUND,
                not_before(states[ident], now),  # after its spend, in the log
            )
            for user_id, ident in idents.items()
        ]
        await append_events(connection, refunds, to_millis(now))
    return message_from_row(row)


async def claim_due(
    connection: Conn, owner: str, now: datetime, lease_until: datetime, limit: int
) -> list[MessageRecord]:
    """Lease due messages to ``owner``: pending or queued, due, and not leased by a live owner.

    Rows another worker is claiming right now are skipped, not waited for.
    """
    rows = await connection.fetch(_CLAIM, to_millis(now), limit, owner, to_millis(lease_until))
    claimed = [message_from_row(row) for row in rows]
    return sorted(claimed, key=lambda m: (m.next_attempt_at, m.id))


async def abandon_in_flight(connection: Conn, now: datetime) -> list[str]:
    """Attempts whose owner died mid-call: the platform may have delivered, so never retry."""
    return sorted(row["id"] for row in await connection.fetch(_ABANDON, to_millis(now)))


def message_from_row(row: asyncpg.Record) -> MessageRecord:
    values = dict(row.items())
    for name in ("next_attempt_at", "created_at", "updated_at"):
        values[name] = from_millis(values[name])
    for name in ("lease_until", "sent_at"):
        values[name] = optional_datetime(values[name])
    for name in _JSON_LISTS:
        values[name] = json_list(values[name])
    return MessageRecord.model_validate(values)
