"""The set-based write of a batch of notifications on PostgreSQL, inside one transaction.

Every notification of the batch goes to one ``INSERT ... SELECT FROM unnest(...)`` (one array
parameter per column, so one statement and one round trip whatever the batch's size) with
``ON CONFLICT DO NOTHING RETURNING``: the keys it returns are new, the others were stored before
(or by a transaction that committed meanwhile, whose commit the insert waited for) and their ids
are read back with one more statement. Rows are inserted in key order, so two replicas writing
overlapping batches take the keys' locks in one order. The insert's statement-level trigger
writes one ``notification.received`` event per inserted row, in the order of their ids, in the
same statement (``0012_set_based_triggers.sql``): the events a single insert would have written.

Only a notification that is new appends the consent events it implies, in arrival order, after
the projection rows of every key the batch touches are locked in one sorted order: the same
events, and the same ``consent.changed`` per saved state, as one notification's transaction.
"""

# ruff: noqa: S608 (every statement is built from constants, at import)
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from storage.ledger import ident_of
from storage.models import ConsentEvent, NotificationRecord, RecordOutcome
from storage.postgres.connection import Conn
from storage.postgres.consents import append_in_order, lock_many
from storage.sql.notification_rows import notification_row
from storage.sql.notifications import INSERT_COLUMNS
from storage.timecodec import to_millis

Key = tuple[str, str]  # (app_id, dedupe_key)
_TYPES = ("text", "text", "text", "text", "bytea", "text", "text", "text", "text", "bigint")
_ARRAYS = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate((*_TYPES, "bigint"), start=1))
_INSERT_MANY = (
    f"INSERT INTO notifications ({INSERT_COLUMNS}) SELECT * FROM unnest({_ARRAYS}) "
    "ON CONFLICT (app_id, dedupe_key) DO NOTHING RETURNING app_id, dedupe_key, id"
)
IDS_OF_KEYS = (
    "SELECT n.app_id, n.dedupe_key, n.id FROM unnest($1::text[], $2::text[]) AS k (app_id, key) "
    "JOIN notifications AS n ON n.app_id = k.app_id AND n.dedupe_key = k.key"
)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One notification of a batch and the consent events it implies."""

    record: NotificationRecord
    events: Sequence[ConsentEvent] = ()

    @property
    def key(self) -> Key:
        return self.record.app_id, self.record.dedupe_key


@dataclass
class BatchAttempt:
    """What a batch's transaction knew before its COMMIT: its server process and the id each
    key's insert took (``storage.postgres.lost_commits`` asks with it whether they landed)."""

    backend_pid: int | None = None
    inserted: dict[Key, int] = field(default_factory=dict)


async def write_batch(
    connection: Conn, arrivals: Sequence[Arrival], attempt: BatchAttempt
) -> list[RecordOutcome]:
    """Store ``arrivals``; one outcome each, in order. A key repeated within the batch is a
    duplicate after its first arrival."""
    inserted = await _insert(connection, arrivals)
    attempt.backend_pid = connection.get_server_pid()
    attempt.inserted = inserted
    stored = await _ids(connection, [key for key in {a.key: None for a in arrivals}], inserted)
    outcomes = outcomes_of(arrivals, stored, inserted)
    new = [a for a, o in zip(arrivals, outcomes, strict=True) if not o.duplicate and a.events]
    states = await lock_many(connection, (ident_of(e) for a in new for e in a.events))
    groups = [(a.events, to_millis(a.record.received_at)) for a in new]
    await append_in_order(connection, groups, states)
    return outcomes


def outcomes_of(
    arrivals: Sequence[Arrival], stored: dict[Key, int], inserted: dict[Key, int]
) -> list[RecordOutcome]:
    """Each arrival's answer: new for the first arrival of a key this batch inserted."""
    seen: set[Key] = set()
    outcomes = []
    for arrival in arrivals:
        key = arrival.key
        new = key not in seen and inserted.get(key) == stored[key]
        seen.add(key)
        outcomes.append(RecordOutcome(notification_id=stored[key], duplicate=not new))
    return outcomes


async def _insert(connection: Conn, arrivals: Sequence[Arrival]) -> dict[Key, int]:
    first: dict[Key, tuple[object, ...]] = {}
    for arrival in arrivals:  # a repeated key is written as it first arrived
        first.setdefault(arrival.key, notification_row(arrival.record))
    rows = sorted(first.items())
    columns = [list(column) for column in zip(*(row for _, row in rows), strict=True)]
    returned = await connection.fetch(_INSERT_MANY, *columns)
    return {(row[0], row[1]): row[2] for row in returned}


async def _ids(connection: Conn, keys: list[Key], inserted: dict[Key, int]) -> dict[Key, int]:
    """The id of every key: those inserted as returned, the others read back."""
    missing = [key for key in keys if key not in inserted]
    if not missing:
        return dict(inserted)
    apps, dedupe_keys = ([key[i] for key in missing] for i in (0, 1))
    rows = await connection.fetch(IDS_OF_KEYS, apps, dedupe_keys)
    return {**inserted, **{(row[0], row[1]): row[2] for row in rows}}
