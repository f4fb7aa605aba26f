"""A send's reservation on PostgreSQL in two statements and no explicit transaction.

A reservation under row locks (``outbox.reserve``) is a transaction of several statements, each
a round trip, and what bounds sends on PostgreSQL is round trips, not flushes. Here the same
decision is made from one read and written by one statement:

1. ``_READ``: the message already stored under the idempotency key (a replay), the recipients'
   projection rows with their row versions (``xmin``), and an identifier for each recipient's
   new ledger event, in one snapshot;
2. the consent rules decide in Python (``storage.sending``), as in every other path;
3. ``_WRITE``: one statement that locks the recipients' rows, in one sorted order, only where
   each is still the version read in step 1, and, only if every one is, inserts the message
   (``ON CONFLICT DO NOTHING`` on its key), then the spends and the projection rows after them,
   both only if the message was inserted. One statement is atomic: all of it is written or none.

Every append to a key saves its row (``consents.append_events``, the intake's batches), which
makes a new version even when the state it saves is equal. So a row still at the version read
means no event was appended to its key since: the decision is exactly the one the locks would
have allowed (spend-once holds across replicas), a late event cannot have slipped in under it
(a cancel is never undone), and no event of the key has an identifier above the one taken in
step 1, which the ``consent.changed`` trigger relies on (``0006_events.sql``: the key's latest
event by id). A row at another version means the decision may be stale: nothing is written and
the caller decides again (``sends``), then under locks.

What this path does not take (``None``): a weekly limit (it counts other sends under an advisory
lock), a recipient without a projection row that would be spent on, a recipient twice, or an
event that would not sort after its key's last one; those go through ``outbox.reserve``.
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from storage.ledger import apply, event_key
from storage.models import ReserveOutcome, SendReservation
from storage.postgres.connection import Conn, columns_of
from storage.postgres.ledger_arrays import (
    EVENT_TYPES,
    KEY_MATCH,
    KEY_NAMES,
    SAVED_TYPES,
    SET_SAVED,
    STATE_NAMES,
    arrays,
)
from storage.postgres.outbox import KeyTaken
from storage.sending import replay, spends, split_by_consent
from storage.sql.dialect import POSTGRES
from storage.sql.ledger import EVENT_COLUMNS, STATE_COLUMNS
from storage.sql.ledger_rows import event_values, state_from_row, state_values
from storage.sql.outbox import MESSAGE_COLUMNS, MESSAGE_NAMES
from storage.sql.outbox_rows import message_from_row, new_message_row
from storage.timecodec import to_millis

HELD_TYPES = ("text",) * 5  # a key's four columns and the version of its row read (xmin)
N_STATE = len(STATE_NAMES)


def prefixed(alias: str, names: Sequence[str]) -> str:
    """``names`` as the columns of ``alias``, for a select list."""
    return ", ".join(f"{alias}.{name}" for name in names)


def _read(recipients: str) -> str:
    """The read of step 1, the recipients given as ``recipients`` (``k(user_id, n)``). Each
    recipient's row is looked up by its whole key (``LATERAL``), whatever the table's
    statistics say when the plan is made; ``LIMIT 1`` (a key has one row) keeps PostgreSQL from
    pulling the subquery up into a join over every key of the template. The message is looked
    up by its key, ``messages_once`` led by it (``0014_message_key_first.sql``); ``app_id`` is
    compared in a form no index serves, so no index led by ``app_id`` alone can be chosen for
    it on a small table."""
    return POSTGRES.render(
        f"SELECT {prefixed('c', STATE_NAMES)}, c.xmin::text, "
        "CASE WHEN m.id IS NULL THEN nextval(pg_get_serial_sequence('consent_events', 'id')) "
        f"END, {prefixed('m', MESSAGE_NAMES)} FROM {recipients} "
        f"LEFT JOIN LATERAL (SELECT {STATE_COLUMNS}, xmin FROM consents WHERE app_id = ? "
        "AND user_id = k.user_id AND channel = ? AND template_id = ? LIMIT 1) AS c ON true "
        "LEFT JOIN messages AS m ON m.idempotency_key = ? AND (m.app_id = ?) IS TRUE ORDER BY k.n"
    )


_READ = _read("unnest(?::text[]) WITH ORDINALITY AS k(user_id, n)")
_READ_ONE = _read("(VALUES (?::text, 1)) AS k(user_id, n)")  # planned as one row (see _one_row)


def _one_row(types: Sequence[str]) -> str:
    """One row given as one parameter per column: planned as one row, so that PostgreSQL keeps
    the statement's generic plan (it plans ``unnest`` of a parameter as many rows, finds a plan
    for the actual arrays cheaper, and plans the statement again at every call)."""
    return f"(VALUES ({', '.join(f'?::{kind}' for kind in types)}))"


def _write(rows: Callable[[Sequence[str]], str]) -> str:
    return POSTGRES.render(
        f"WITH x AS (SELECT * FROM {rows(HELD_TYPES)} AS x({KEY_NAMES}, version)), "
        f"held AS (SELECT c.user_id FROM consents AS c JOIN x ON {KEY_MATCH} "
        "WHERE c.xmin = x.version::xid "
        "ORDER BY c.app_id, c.user_id, c.channel, c.template_id FOR UPDATE OF c), "
        f"message AS (INSERT INTO messages ({MESSAGE_COLUMNS}) "
        f"SELECT {', '.join('?' for _ in MESSAGE_NAMES)} WHERE (SELECT count(*) FROM held) = ? "
        f"ON CONFLICT (app_id, idempotency_key) DO NOTHING RETURNING {MESSAGE_COLUMNS}), "
        f"spent AS (INSERT INTO consent_events (id, {EVENT_COLUMNS}, recorded_at) "
        f"OVERRIDING SYSTEM VALUE SELECT * FROM {rows(EVENT_TYPES)} AS e "
        "WHERE EXISTS (SELECT 1 FROM message)), "
        f"saved AS (UPDATE consents AS c SET {SET_SAVED} "
        f"FROM {rows(SAVED_TYPES)} AS x({STATE_COLUMNS}, changed_by) "
        f"WHERE {KEY_MATCH} AND EXISTS (SELECT 1 FROM message)) "
        f"SELECT (SELECT count(*) FROM held), {prefixed('message', MESSAGE_NAMES)} "
        "FROM (VALUES (1)) AS one LEFT JOIN message ON true"
    )


_WRITE = _write(arrays)
_WRITE_ONE = _write(_one_row)  # one recipient, spent on: the usual send


class StateChanged(Exception):
    """A recipient's state changed between the read and the write: nothing was written."""


@dataclass(frozen=True, slots=True)
class Read:
    """What step 1 read for one reservation."""

    existing: tuple[Any, ...] | None  # the message stored under the key, if any
    rows: dict[str, tuple[Any, ...]]  # user id -> projection row and its version (xmin)
    event_ids: dict[str, int]  # user id -> the identifier of its new ledger event


@dataclass(frozen=True, slots=True)
class Decided:
    """What step 3 writes for one reservation: the rows it holds, at the versions read, and
    what it writes if they still are."""

    expected: list[tuple[Any, ...]]  # each held row's key and version
    message: tuple[Any, ...]  # the new message's row
    events: list[tuple[Any, ...]]  # each spend's ledger entry, its identifier first
    after: list[tuple[Any, ...]]  # each spent key's saved state, then ``changed_by``


def read_of(users: Sequence[str], rows: Sequence[Any]) -> Read:
    """The ``Read`` of step 1's rows for ``users`` (one row each, in their order)."""
    message = tuple(rows[0][N_STATE + 2 :])
    existing = message if message[0] is not None else None
    found = {
        user: tuple(row[: N_STATE + 1]) for user, row in zip(users, rows, strict=True) if row[0]
    }
    ids = {user: row[N_STATE + 1] for user, row in zip(users, rows, strict=True)}
    return Read(existing, found, ids)


async def _read_for(connection: Conn, r: SendReservation) -> Read:
    users = list(r.candidates)
    recipients = users[0] if len(users) == 1 else users
    rows = await connection.fetch(
        _READ_ONE if len(users) == 1 else _READ,
        recipients,
        r.app_id,
        r.consent_channel,
        r.template_id,
        r.idempotency_key,
        r.app_id,
    )
    return read_of(users, rows)


def takes(reservation: SendReservation) -> bool:
    """Whether this path can decide the reservation at all: no weekly limit (counted under an
    advisory lock) and no recipient twice."""
    candidates = reservation.candidates
    return reservation.weekly_limit is None and len(set(candidates)) == len(candidates)


def decide(r: SendReservation, read: Read, *, begin: bool) -> ReserveOutcome | Decided | None:
    """Step 2: a replay, the rows to write, or ``None`` when it needs ``outbox.reserve``.
    Raises the consent rules' refusals."""
    if read.existing is not None:
        return replay(message_from_row(read.existing), r)
    states = {user: state_from_row(row[:N_STATE]) for user, row in read.rows.items()}
    allowed, skipped = split_by_consent(r, states)
    if any(user not in states for user in allowed):  # spent on a key without a row
        return None
    events, after = [], []
    for user, event in zip(allowed, spends(r, allowed, states), strict=True):
        key, state = event_key(event, read.event_ids[user]), states[user]
        if state.last_key is not None and key <= tuple(state.last_key):
            return None  # would sort before the key's last event: refolded under locks
        events.append((read.event_ids[user], *event_values(event, to_millis(r.created_at))))
        after.append((*state_values(apply(state, event, key)), read.event_ids[user]))
    expected = [(*row[:4], row[N_STATE]) for row in read.rows.values()]
    message = new_message_row(r, allowed, skipped, begun=begin)
    return Decided(expected, message, events, after)


def outcome_of(
    decided: Decided, held: int, message: Sequence[Any] | None, *, begin: bool
) -> ReserveOutcome:
    """Step 3's answer: the reservation, or why nothing was written (``StateChanged`` when a
    held row was no longer the one read, ``KeyTaken`` when a racing request took the key)."""
    if held != len(decided.expected):
        raise StateChanged
    if message is None or message[0] is None:
        raise KeyTaken
    return ReserveOutcome(message=message_from_row(message), replayed=False, begun=begin)


async def reserve(
    connection: Conn, reservation: SendReservation, *, begin: bool
) -> ReserveOutcome | None:
    """The reservation, a replay, or ``None`` when it needs ``outbox.reserve`` (see above).

    Raises the consent rules' refusals; ``StateChanged`` when a recipient's state changed since
    it was read; ``outbox.KeyTaken`` when a racing request took the key (nothing was written)."""
    if not takes(reservation):
        return None
    decided = decide(reservation, await _read_for(connection, reservation), begin=begin)
    if not isinstance(decided, Decided):
        return decided
    expected, events, after = decided.expected, decided.events, decided.after
    if len(expected) == len(events) == 1:
        row = await connection.fetchrow(
            _WRITE_ONE, *expected[0], *decided.message, 1, *events[0], *after[0]
        )
    else:
        row = await connection.fetchrow(
            _WRITE,
            *columns_of(expected, len(HELD_TYPES)),
            *decided.message,
            len(expected),
            *columns_of(events, len(EVENT_TYPES)),
            *columns_of(after, len(SAVED_TYPES)),
        )
    assert row is not None  # the statement always answers one row
    return outcome_of(decided, row[0], row[1:], begin=begin)
