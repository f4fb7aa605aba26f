"""Deliveries of events for the PostgreSQL store: the fan-out, claims, attempts and replays,
each inside one ``transact`` transaction.

A destination's fan-out holds its cursor row (``FOR UPDATE SKIP LOCKED``) to move it: one process
at a time takes events for it, and a process that finds the row held, or moved since it read the
log, takes nothing. It reads only settled
events (``storage.sql.dialect``), so its cursor never passes an event that commits later.
Workers claim with ``FOR UPDATE SKIP LOCKED`` and a lease, as the outbox does: a delivery is
leased to one owner at a time, and only a lease that has run out can be claimed again. A finish
locks the deliveries it reports on, in id order, before it reads whose lease they are under.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from storage.models import (
    START,
    ClaimedDelivery,
    DeliveryResult,
    DeliveryRound,
    EventHead,
    RoundOutcome,
)
from storage.postgres.connection import Conn
from storage.sql.dialect import POSTGRES
from storage.sql.event_rows import (
    attempt_values,
    claimed,
    event_read,
    verdict_values,
    wanted_deliveries,
)
from storage.sql.events import EVENTS
from storage.sql.statements import statements_for
from storage.timecodec import to_millis

SQL = statements_for(POSTGRES).events
Wants = Callable[[EventHead], bool]
_HOLD_CURSOR = POSTGRES.render(f"{EVENTS.cursor_of} FOR UPDATE SKIP LOCKED")
_CLAIM = POSTGRES.render(f"{EVENTS.due_deliveries} FOR UPDATE OF d SKIP LOCKED")
# The deliveries of a finished batch that ``owner`` still holds, locked one by one in the array's
# order (the ids come sorted). Each is looked up by its primary key in a LATERAL subquery, so the
# plan does not depend on statistics: ``id = ANY(...)`` was planned as a scan of every delivery
# when the table had grown since its last ANALYZE.
_HELD = POSTGRES.render(
    "SELECT d.id FROM unnest(?::bigint[]) AS k(id) "
    "CROSS JOIN LATERAL (SELECT id FROM deliveries WHERE id = k.id AND lease_owner = ? "
    "FOR UPDATE) AS d"
)


async def fan_out(
    connection: Conn, destination: str, wants: Wants, now: datetime, limit: int
) -> int:
    """As ``Store.fan_out`` says; a destination never seen gets its cursor at the end.

    The log is read before the cursor row is held. Holding it gives the transaction an id, and
    a snapshot counts its own transaction as still running: read after, the log would look
    settled only up to that id, and newer events would wait a round. The reads count only if
    the row held is still at the cursor they started from (another process may have moved it
    meanwhile, or hold it now: then this one reads nothing)."""
    cursor = await connection.fetchrow(SQL.cursor_of, destination)
    if cursor is None:
        last = await connection.fetchrow(SQL.last_position)
        await connection.execute(SQL.insert_cursor, destination, *(last or START))
        return 0
    rows = await connection.fetch(SQL.heads_after, *cursor, limit)
    held = await connection.fetchrow(_HOLD_CURSOR, destination)
    if held is None or tuple(held) != tuple(cursor):
        return 0
    reads = [event_read(row) for row in rows]
    made = wanted_deliveries(destination, reads, wants, to_millis(now))
    await connection.executemany(SQL.insert_delivery, made)
    if reads:
        await connection.execute(SQL.move_cursor, *reads[-1][0], destination)
    return len(reads)


async def claim(
    connection: Conn,
    destination: str,
    owner: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
) -> list[ClaimedDelivery]:
    """Lease the due deliveries to ``owner``; those another worker is claiming are skipped."""
    at = to_millis(now)
    rows = await connection.fetch(_CLAIM, destination, at, at, limit)
    until = to_millis(lease_until)
    await connection.executemany(SQL.lease_delivery, [(owner, until, row[0]) for row in rows])
    return [claimed(row) for row in rows]


async def finish(connection: Conn, owner: str, results: Sequence[DeliveryResult]) -> int:
    """Keep every attempt; apply the verdicts of the deliveries ``owner`` still holds."""
    ids = sorted({result.delivery_id for result in results})
    held = {row[0] for row in await connection.fetch(_HELD, ids, owner)}
    await connection.executemany(SQL.insert_attempt, [attempt_values(r) for r in results])
    verdicts = [verdict_values(r, owner) for r in results if r.delivery_id in held]
    await connection.executemany(SQL.apply_verdict, verdicts)
    return len(held)


async def advance(connection: Conn, work: DeliveryRound, wants: Wants) -> RoundOutcome:
    """As ``Store.advance_deliveries`` says. The fan-out comes first: it reads the log before
    this transaction has an id (``fan_out``)."""
    read = await fan_out(connection, work.destination, wants, work.now, work.fan_out_limit)
    applied = await finish(connection, work.owner, work.kept) if work.kept else 0
    batch = await claim(
        connection, work.destination, work.owner, work.now, work.lease_until, work.claim_limit
    )
    return RoundOutcome(read, applied, batch)


async def replay(connection: Conn, destination: str, event_id: int, now: datetime) -> bool:
    """As ``Store.replay_delivery`` says."""
    at = to_millis(now)
    status = await connection.execute(SQL.replay_delivery, at, at, at, destination, event_id)
    return status != "UPDATE 0"


async def replay_since(
    connection: Conn, destination: str, since: datetime, wants: Wants, now: datetime
) -> int:
    """As ``Store.replay_since`` says; nothing for a destination without a cursor."""
    cursor = await connection.fetchrow(SQL.cursor_of, destination)
    if cursor is None:
        return 0
    rows = await connection.fetch(SQL.heads_since, to_millis(since), *cursor)
    replayed = wanted_deliveries(destination, map(event_read, rows), wants, to_millis(now))
    await connection.executemany(SQL.replay_or_insert_delivery, replayed)
    return len(replayed)
