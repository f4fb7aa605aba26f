"""Deliveries of events for the SQLite store: the fan-out, claims, attempts and replays, each
one writer job.

The single writer is alone, so a destination's cursor and the deliveries' leases need no lock:
a job reads them and writes them before any other job runs. Every committed event is settled
here (one writer commits in id order), and a job sees the events of the jobs before it in its
batch, which commit with it or not at all.
"""

from __future__ import annotations

import sqlite3
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
from storage.sql.dialect import SQLITE
from storage.sql.event_rows import (
    attempt_values,
    claimed,
    event_read,
    verdict_values,
    wanted_deliveries,
)
from storage.sql.statements import statements_for
from storage.timecodec import to_millis

SQL = statements_for(SQLITE).events
Wants = Callable[[EventHead], bool]


def fan_out(
    connection: sqlite3.Connection, destination: str, wants: Wants, now: datetime, limit: int
) -> int:
    """As ``Store.fan_out`` says; a destination never seen gets its cursor at the end."""
    cursor = connection.execute(SQL.cursor_of, (destination,)).fetchone()
    if cursor is None:
        last = connection.execute(SQL.last_position).fetchone()
        connection.execute(SQL.insert_cursor, (destination, *(last or START)))
        return 0
    reads = [event_read(row) for row in connection.execute(SQL.heads_after, (*cursor, limit))]
    made = wanted_deliveries(destination, reads, wants, to_millis(now))
    connection.executemany(SQL.insert_delivery, made)
    if reads:
        connection.execute(SQL.move_cursor, (*reads[-1][0], destination))
    return len(reads)


def claim(
    connection: sqlite3.Connection,
    destination: str,
    owner: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
) -> list[ClaimedDelivery]:
    """Lease the due deliveries to ``owner`` (no other job can claim between read and lease)."""
    at = to_millis(now)
    rows = connection.execute(SQL.due_deliveries, (destination, at, at, limit)).fetchall()
    until = to_millis(lease_until)
    connection.executemany(SQL.lease_delivery, [(owner, until, row[0]) for row in rows])
    return [claimed(row) for row in rows]


def finish(connection: sqlite3.Connection, owner: str, results: Sequence[DeliveryResult]) -> int:
    """Keep every attempt; apply the verdicts of the deliveries ``owner`` still holds."""
    connection.executemany(SQL.insert_attempt, [attempt_values(result) for result in results])
    verdicts = (verdict_values(result, owner) for result in results)
    return sum(connection.execute(SQL.apply_verdict, values).rowcount for values in verdicts)


def advance(connection: sqlite3.Connection, work: DeliveryRound, wants: Wants) -> RoundOutcome:
    """As ``Store.advance_deliveries`` says: finish, fan out, claim, in one writer job."""
    applied = finish(connection, work.owner, work.kept) if work.kept else 0
    read = fan_out(connection, work.destination, wants, work.now, work.fan_out_limit)
    batch = claim(
        connection, work.destination, work.owner, work.now, work.lease_until, work.claim_limit
    )
    return RoundOutcome(read, applied, batch)


def replay(connection: sqlite3.Connection, destination: str, event_id: int, now: datetime) -> bool:
    """As ``Store.replay_delivery`` says."""
    at = to_millis(now)
    params = (at, at, at, destination, event_id)
    return connection.execute(SQL.replay_delivery, params).rowcount > 0


def replay_since(
    connection: sqlite3.Connection, destination: str, since: datetime, wants: Wants, now: datetime
) -> int:
    """As ``Store.replay_since`` says; nothing for a destination without a cursor."""
    cursor = connection.execute(SQL.cursor_of, (destination,)).fetchone()
    if cursor is None:
        return 0
    params = (to_millis(since), *cursor)
    reads = [event_read(row) for row in connection.execute(SQL.heads_since, params)]
    replayed = wanted_deliveries(destination, reads, wants, to_millis(now))
    connection.executemany(SQL.replay_or_insert_delivery, replayed)
    return len(replayed)
