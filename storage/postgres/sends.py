"""A send's writes on PostgreSQL, each in as few round trips as its guarantees allow.

What bounds sends on PostgreSQL is round trips (each costs the event loop and a backend CPU on
the cores that also sign and verify every call), not WAL flushes, which concurrent commits share.
So a reservation is first tried as one read and one conditional write without a transaction
(``reservations``), those of concurrent requests together (``reservation_batches``); only when
that cannot be used, or keeps finding its recipients' states changed under it, does it run as a
transaction holding row locks (``outbox.reserve``). Finishing an attempt is a single update
unless it refunds, so concurrent ones are written together by one statement without BEGIN and
COMMIT (``outcomes``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from storage.errors import StorageUnavailable
from storage.models import AttemptResult, MessageRecord, ReserveOutcome, SendReservation
from storage.postgres import outbox, reservations
from storage.postgres.connection import Conn, Job, Pool, T, fetch
from storage.postgres.outcomes import OutcomeBatches
from storage.postgres.reservation_batches import ReservationBatches
from storage.sending import refunds_spends, replay
from storage.sql.dialect import POSTGRES
from storage.sql.outbox_rows import finish_values, message_from_row
from storage.sql.statements import statements_for

# Decisions tried without locks before the locking transaction. Each try that finds a state
# changed lost to a send that committed, so a few tries settle the usual race of a few sends to
# one user; a user many sends race on is then served under locks, one after the other, instead of
# by rounds of tries that only one of them wins.
UNLOCKED_TRIES = 3
_MESSAGE_OF_KEY = statements_for(POSTGRES).outbox.message_of_key


class Runner(Protocol):
    """The store's way to run a job on a pooled connection (retries, commit observer)."""

    async def __call__(self, job: Job[T], *, atomic: bool = True) -> T: ...


async def reserve_send(
    pool: Pool,
    run: Runner,
    reservation: SendReservation,
    *,
    begin: bool,
    batches: ReservationBatches | None = None,
) -> ReserveOutcome:
    """As ``Store.reserve_send`` says. A key taken by a racing request (its transaction, or
    ours, rolled back or wrote nothing) is answered from that request's message. With
    ``batches`` the tries without locks are decided with the reservations of concurrent
    requests (``reservation_batches``)."""

    async def unlocked(connection: Conn) -> ReserveOutcome | None:
        return await reservations.reserve(connection, reservation, begin=begin)

    async def unlocked_try() -> ReserveOutcome | None:
        if batches is not None:
            return await batches.reserve(reservation, begin=begin)
        return await run(unlocked, atomic=False)

    unlocked_first = reservations.takes(reservation)
    for _ in range(UNLOCKED_TRIES if unlocked_first else 0):
        try:
            outcome = await unlocked_try()
        except reservations.StateChanged:
            continue
        except outbox.KeyTaken:
            return await _replay_of_taken(pool, reservation)
        if outcome is None:
            break
        return outcome
    if not unlocked_first:  # a replay is answered without a transaction (as its read did)
        existing = await _message_by_key(pool, reservation.app_id, reservation.idempotency_key)
        if existing is not None:
            return replay(existing, reservation)
    try:
        return await run(lambda connection: outbox.reserve(connection, reservation, begin=begin))
    except outbox.KeyTaken:  # rolled back: answer from the request that took the key
        return await _replay_of_taken(pool, reservation)


async def _replay_of_taken(pool: Pool, reservation: SendReservation) -> ReserveOutcome:
    existing = await _message_by_key(pool, reservation.app_id, reservation.idempotency_key)
    if existing is None:  # taken by a transaction that then rolled back: unlikely
        raise StorageUnavailable("the idempotency key is being used; retry") from None
    return replay(existing, reservation)


async def _message_by_key(pool: Pool, app_id: str, idempotency_key: str) -> MessageRecord | None:
    rows = await fetch(pool, _MESSAGE_OF_KEY, app_id, idempotency_key)
    return message_from_row(rows[0]) if rows else None


async def finish_attempt(
    run: Runner, batches: OutcomeBatches, message_id: str, result: AttemptResult, now: datetime
) -> MessageRecord:
    """As ``Store.finish_attempt`` says. Without a refund the outcome is one conditional update,
    written with the outcomes of concurrent sends in one statement (``outcomes``); a refund must
    commit with it, so that one is a transaction of its own."""
    status, _ = finish_values(message_id, result, now)
    if not refunds_spends(status):
        return await batches.finish(message_id, result, now)
    return await run(lambda connection: outbox.finish_attempt(connection, message_id, result, now))
