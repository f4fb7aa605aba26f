"""Outbox SQL for the SQLite store. Every function runs inside a writer job's transaction.

``reserve`` is the spend-once guarantee: the consent check, the send limit (``storage.sending``),
the ``spend`` events and the outbox row commit together on the single writer, so of any number
of concurrent sends against one credit exactly one finds it, and none exceeds a limit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

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
from storage.sending import (
    check_limit,
    ledger_event,
    new_message_row,
    not_before,
    split_by_consent,
    window_start,
)
from storage.sqlite.consents import append_events, load_state
from storage.timecodec import from_millis, optional_datetime, to_millis

COLUMNS = (
    "id, app_id, idempotency_key, request_sha256, channel, user_id, template_id, payload, "
    "status, attempts, next_attempt_at, lease_owner, lease_until, platform_code, platform_msg, "
    "sub_code, sub_msg, last_error, created_at, updated_at, sent_at, recipients, skipped, "
    "warnings, ledger_channel"
)
_NAMES = tuple(name.strip() for name in COLUMNS.split(","))
_SELECT = f"SELECT {COLUMNS} FROM messages"  # noqa: S608 (constant)
_RETRYABLE = (MessageStatus.PENDING.value, MessageStatus.QUEUED.value)
_JSON_LISTS = ("recipients", "skipped", "warnings")


def reserve(
    connection: sqlite3.Connection, reservation: SendReservation, *, begin: bool = False
) -> ReserveOutcome:
    existing = connection.execute(
        f"{_SELECT} WHERE app_id = ? AND idempotency_key = ?",
        (reservation.app_id, reservation.idempotency_key),
    ).fetchone()
    if existing is not None:
        message = message_from_row(existing)
        if message.request_sha256 != reservation.request_sha256:
            raise IdempotencyMismatch("this Idempotency-Key was used with a different message")
        return ReserveOutcome(message=message, replayed=True)
    r = reservation
    states = {
        user_id: load_state(connection, r.app_id, user_id, r.consent_channel, r.template_id)
        for user_id in r.candidates
    }
    allowed, skipped = split_by_consent(r, states)
    if r.weekly_limit is not None:
        check_limit(r, _created_since(connection, r.app_id, r.channel, window_start(r)))
    spends = [
        ledger_event(r, user_id, ConsentAction.SPEND, not_before(states[user_id], r.created_at))
        for user_id in allowed
    ]
    append_events(connection, spends, _ms(r.created_at), known=states)
    row = new_message_row(r, allowed, skipped, begun=begin)
    connection.execute(
        f"INSERT INTO messages ({COLUMNS}) VALUES ({','.join('?' * len(_NAMES))})",  # noqa: S608
        row,
    )
    return ReserveOutcome(message=message_from_row(row), replayed=False, begun=begin)


def _created_since(
    connection: sqlite3.Connection, app_id: str, channel: str, since: datetime
) -> list[int]:
    rows = connection.execute(
        "SELECT created_at FROM messages WHERE app_id = ? AND channel = ? AND created_at > ?",
        (app_id, channel, _ms(since)),
    )
    return [row[0] for row in rows]


def begin_attempt(
    connection: sqlite3.Connection,
    message_id: str,
    owner: str,
    now: datetime,
    lease_until: datetime,
) -> MessageRecord | None:
    """Mark an attempt as in flight (committed before the call), if this owner holds the row."""
    started = connection.execute(
        "UPDATE messages SET status = 'sending', attempts = attempts + 1, lease_until = ?, "  # noqa: S608
        "updated_at = ? WHERE id = ? AND lease_owner = ? AND status IN (?, ?) "
        f"RETURNING {COLUMNS}",
        (_ms(lease_until), _ms(now), message_id, owner, *_RETRYABLE),
    ).fetchone()
    return message_from_row(started) if started is not None else None


def finish_attempt(
    connection: sqlite3.Connection, message_id: str, result: AttemptResult, now: datetime
) -> MessageRecord:
    status = {
        AttemptOutcome.SENT: MessageStatus.SENT,
        AttemptOutcome.REJECTED: MessageStatus.FAILED,
        AttemptOutcome.EXHAUSTED: MessageStatus.FAILED,
        AttemptOutcome.RETRY: MessageStatus.QUEUED,
        AttemptOutcome.UNKNOWN: MessageStatus.UNKNOWN,
    }[result.outcome]
    next_at = result.next_attempt_at if result.outcome is AttemptOutcome.RETRY else now
    finished = connection.execute(
        "UPDATE messages SET status = ?, next_attempt_at = ?, lease_owner = NULL, "  # noqa: S608
        "lease_until = NULL, platform_code = ?, platform_msg = ?, sub_code = ?, sub_msg = ?, "
        "last_error = ?, updated_at = ?, sent_at = ? WHERE id = ? AND status = 'sending' "
        f"RETURNING {COLUMNS}",
        (
            status.value,
            _ms(next_at or now),
            result.platform_code,
            result.platform_msg,
            result.sub_code,
            result.sub_msg,
            result.error,
            _ms(now),
            _ms(now) if status is MessageStatus.SENT else None,
            message_id,
        ),
    ).fetchone()
    if finished is None:  # not in flight (finished already): nothing changes
        return get(connection, message_id)
    message = message_from_row(finished)
    if status is MessageStatus.FAILED:  # it was in flight, so its spends stand: give them back
        refunds = []
        for user_id in message.allowed:  # each recipient's spend is given back
            state = load_state(
                connection, message.app_id, user_id, message.consent_channel, message.template_id
            )
            at = not_before(state, now)  # after its spend, which is in the log
            refunds.append(ledger_event(message, user_id, ConsentAction.REFUND, at))
        append_events(connection, refunds, _ms(now))
    return message


def claim_due(
    connection: sqlite3.Connection, owner: str, now: datetime, lease_until: datetime, limit: int
) -> list[MessageRecord]:
    """Lease due messages to ``owner``: pending or queued, due, and not leased by a live owner."""
    ids = [
        row[0]
        for row in connection.execute(
            "SELECT id FROM messages WHERE status IN (?, ?) AND next_attempt_at <= ? "
            "AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at LIMIT ?",
            (*_RETRYABLE, _ms(now), _ms(now), limit),
        )
    ]
    for message_id in ids:
        connection.execute(
            "UPDATE messages SET lease_owner = ?, lease_until = ? WHERE id = ?",
            (owner, _ms(lease_until), message_id),
        )
    return [get(connection, message_id) for message_id in ids]


def abandon_in_flight(connection: sqlite3.Connection, now: datetime) -> list[str]:
    """Attempts whose owner died mid-call: the platform may have delivered, so never retry."""
    ids = [
        row[0]
        for row in connection.execute(
            "SELECT id FROM messages WHERE status = 'sending' AND lease_until < ?", (_ms(now),)
        )
    ]
    for message_id in ids:
        connection.execute(
            "UPDATE messages SET status = 'unknown', lease_owner = NULL, lease_until = NULL, "
            "last_error = 'the attempt was interrupted; the platform may have delivered it', "
            "updated_at = ? WHERE id = ?",
            (_ms(now), message_id),
        )
    return ids


def get(connection: sqlite3.Connection, message_id: str) -> MessageRecord:
    row = connection.execute(f"{_SELECT} WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        raise KeyError(message_id)  # as the PostgreSQL store does
    return message_from_row(row)


def message_from_row(row: Sequence[Any]) -> MessageRecord:
    values = dict(zip(_NAMES, row, strict=True))
    for name in ("next_attempt_at", "created_at", "updated_at"):
        values[name] = from_millis(values[name])
    for name in ("lease_until", "sent_at"):
        values[name] = optional_datetime(values[name])
    for name in _JSON_LISTS:
        values[name] = json_list(values[name])
    return MessageRecord.model_validate(values)


def _ms(value: datetime) -> int:
    return to_millis(value)
