"""Deliveries of events for the SQLite store: the fan-out, claims, attempts and replays, each
one writer job.

The single writer is alone, so a destination's cursor and the deliveries' leases need no lock:
a job reads them and writes them before any other job runs. Every committed event is settled
here (one writer commits in id order), and a job sees the events of the jobs before it in its
batch, which commit with it or not at all.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

from storage.models import (
    START,
    DeliveryResult,
    DeliveryRound,
    EventHead,
)
from storage.sql.dialect import SQLITE
from storage.sql.event_rows import (
    attempt_values,
    event_read,
    verdict_values,
    wanted_deliveries,
)
from storage.sql.rows import Row
from storage.sql.statements import statements_for
from storage.sqlite.delivery_counts import StateChange, count_changes, count_new_pending
from storage.timecodec import to_millis

SQL = statements_for(SQLITE).events
# A batch's attempts and verdicts, each in one statement over a JSON array of their parameters
# (``attempt_values``, ``verdict_values``): a statement per delivery had been the largest part of
# a delivery round's time on the writer. The verdicts return the state they leave, for the
# totals (a held lease means it was pending, with one attempt fewer).
_INSERT_ATTEMPTS = (
    "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, latency_ms, error) "
    "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM json_each(?)"
)
_APPLY_VERDICTS = (
    "UPDATE deliveries SET status = v.status, "
    "next_attempt_at = coalesce(v.next_at, deliveries.next_attempt_at), "
    "delivered_at = v.delivered_at, attempts = deliveries.attempts + 1, "
    "last_status = v.last_status, last_error = v.last_error, updated_at = v.updated_at, "
    "lease_owner = NULL, lease_until = NULL FROM (SELECT value ->> 0 AS status, "
    "value ->> 1 AS next_at, value ->> 2 AS delivered_at, value ->> 3 AS last_status, "
    "value ->> 4 AS last_error, value ->> 5 AS updated_at, value ->> 6 AS id "
    "FROM json_each(?)) AS v WHERE deliveries.id = v.id AND deliveries.lease_owner = ? "
    "RETURNING destination, status, attempts"
)
_LEASE = (
    "UPDATE deliveries SET lease_owner = ?, lease_until = ? "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
_STATE_OF = "SELECT status, attempts FROM deliveries WHERE destination = ? AND event_id = ?"
_STATES_OF = (
    "SELECT event_id, status, attempts FROM deliveries WHERE destination = ? "
    "AND event_id IN (SELECT value FROM json_each(?))"
)
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
    count_new_pending(
        connection, destination, connection.executemany(SQL.insert_delivery, made).rowcount
    )
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
) -> list[Row]:
    """Lease the due deliveries to ``owner`` (no other job can claim between read and lease);
    their rows, which ``claimed`` turns into deliveries once the job has committed: every
    commit waits behind this job, and that work need not hold it up."""
    at = to_millis(now)
    rows = connection.execute(SQL.due_deliveries, (destination, at, at, limit)).fetchall()
    if rows:
        ids = json.dumps([row[0] for row in rows])
        connection.execute(_LEASE, (owner, to_millis(lease_until), ids))
    return rows


def finish(connection: sqlite3.Connection, owner: str, results: Sequence[DeliveryResult]) -> int:
    """Keep every attempt; apply the verdicts of the deliveries ``owner`` still holds."""
    attempt_rows = json.dumps([attempt_values(result) for result in results])
    connection.execute(_INSERT_ATTEMPTS, (attempt_rows,))
    verdict_rows = json.dumps([verdict_values(result, owner)[:-1] for result in results])
    changes = [
        StateChange(destination, ("pending", attempts - 1), (status, attempts))
        for destination, status, attempts in connection.execute(
            _APPLY_VERDICTS, (verdict_rows, owner)
        )
    ]
    count_changes(connection, changes)
    return len(changes)


def advance(
    connection: sqlite3.Connection, work: DeliveryRound, wants: Wants
) -> tuple[int, int, list[Row]]:
    """As ``Store.advance_deliveries`` says: finish, fan out, claim, in one writer job; the
    events read, the verdicts applied, the claimed rows (as ``claim``)."""
    applied = finish(connection, work.owner, work.kept) if work.kept else 0
    read = fan_out(connection, work.destination, wants, work.now, work.fan_out_limit)
    rows = claim(
        connection, work.destination, work.owner, work.now, work.lease_until, work.claim_limit
    )
    return read, applied, rows


def replay(connection: sqlite3.Connection, destination: str, event_id: int, now: datetime) -> bool:
    """As ``Store.replay_delivery`` says."""
    before = connection.execute(_STATE_OF, (destination, event_id)).fetchone()
    if before is None:
        return False
    at = to_millis(now)
    connection.execute(SQL.replay_delivery, (at, at, at, destination, event_id))
    status, attempts = before
    count_changes(connection, [StateChange(destination, (status, attempts), ("pending", attempts))])
    return True


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
    event_ids = json.dumps([values[2] for values in replayed])
    before = {
        event_id: (status, attempts)
        for event_id, status, attempts in connection.execute(_STATES_OF, (destination, event_ids))
    }
    connection.executemany(SQL.replay_or_insert_delivery, replayed)
    changes = []
    for values in replayed:
        was = before.get(values[2])
        changes.append(StateChange(destination, was, ("pending", was[1] if was else 0)))
    count_changes(connection, changes)
    return len(replayed)
