"""SQLiteStore: the embedded default store.

Writes go through one ``SerialWriter`` (one connection, one thread, group commit), so every
write transaction is serialised: spend-once and idempotency need no retry loops. Reads use a
separate read-only aiosqlite connection, which WAL lets run beside the writer; the statements and
decoders of most reads are shared with PostgreSQL (``storage.sql.reads``).

One read does not hop to that thread: the single consent state of one (app, user, channel,
template) key, the question every "may I message this user?" asks. It runs on the event loop's
own thread through a third, read-only connection: a primary-key lookup of a few cached pages
costs less than the hop itself, whose thread must then win the GIL back from a busy loop
(bench/README.md measures both). The keys asked for in one turn of the loop are read together
at its end (``storage.sqlite.point_reads``). That connection never waits on a lock
(``busy_timeout`` 0): when SQLite answers busy, the read goes to the reader thread as every
other read does. A cold page still costs the loop one disk read; reads of many rows never run
there. Both read-only connections read through a memory map (``SQLiteOptions.read_mmap_mb``),
so a page the OS holds costs no system call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiosqlite

from storage.base import CommitObserver, EventFilter
from storage.errors import StorageUnavailable
from storage.models import (
    AttemptResult,
    ClaimedDelivery,
    ConsentEvent,
    ConsentState,
    ConsentSummary,
    DeliveryResult,
    DeliveryRound,
    MessageRecord,
    NotificationRecord,
    RecordOutcome,
    ReportAnswer,
    ReportOutcome,
    ReserveOutcome,
    RoundOutcome,
    SendReservation,
    Settlement,
    SubscribeReport,
)
from storage.sql.dialect import SQLITE, marks
from storage.sql.event_rows import claimed
from storage.sql.ledger import LEDGER
from storage.sql.ledger_rows import summary_from_row
from storage.sql.notification_rows import notification_row, refusal_rows
from storage.sql.reads import StoreReads
from storage.sql.reconcile_walk import ReconcileWalk
from storage.sql.rows import Row
from storage.sql.statements import statements_for
from storage.sqlite import consents, deliveries, notifications, outbox, reports
from storage.sqlite.connection import SQLiteOptions, open_connections
from storage.sqlite.point_reads import PointReads
from storage.sqlite.settle import settle_message
from storage.sqlite.writer import SerialWriter, WriteJob
from storage.timecodec import to_millis

T = TypeVar("T")
P = ParamSpec("P")
_MAX_SQL_PARAMS = 500
_WAIT_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})  # worth the reader's wait


class SQLiteStore(StoreReads, ReconcileWalk):
    """The ``Store`` of one SQLite file: one writer thread, a reader thread, and single-key
    reads on the event loop's thread (see the module docstring)."""

    _sql = statements_for(SQLITE)

    def __init__(
        self,
        writer: SerialWriter,
        reader: aiosqlite.Connection,
        point_reader: sqlite3.Connection,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._point_reads = PointReads(point_reader)  # on the event loop's thread only
        self._closed = False

    @classmethod
    async def open(cls, options: SQLiteOptions) -> SQLiteStore:
        """Open (and migrate) the file: ``StorageUnavailable`` when it cannot be."""
        return cls(*await open_connections(options))

    def observe_commits(self, observer: CommitObserver) -> None:
        """As ``Store.observe_commits`` says: after each group commit of the writer."""
        self._writer.observe = observer

    @property
    def writer(self) -> SerialWriter:
        """The single writer (its batch counters, and pragmas between batches)."""
        return self._writer

    async def close(self) -> None:
        """Finish pending writes, then close every connection, the writer last (the last
        connection to close checkpoints the WAL and removes it). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._point_reads.connection.close()
        await self._reader.close()
        await self._writer.close()

    def _check_open(self) -> None:
        # A closed aiosqlite connection raises ValueError and a shut-down writer thread never
        # answers: both must surface as the store being unavailable (503), not a 500 or a hang.
        if self._closed:
            raise StorageUnavailable("the store is closed")

    async def _job(
        self,
        operation: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``operation(connection, ...)`` as a writer job in a savepoint of its own."""
        self._check_open()
        return await self._writer.run(_bound(operation, *args, **kwargs))

    async def _job_without_savepoint(
        self,
        operation: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """A writer job whose every refusal comes before its first write: two statements
        fewer, and a refusal after a write would fail its whole batch (``storage.sqlite.batch``)."""
        self._check_open()
        return await self._writer.run(_bound(operation, *args, **kwargs), isolated=False)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        self._check_open()
        try:  # one hop to the reader thread (execute, fetch and close there), not three
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as error:
            raise StorageUnavailable(f"read failed: {error}") from error

    async def _fetch_key(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        """A read of one key's row on this thread, with the turn's other keys; busy (a lock it
        would wait for): the reader thread's turn, which waits up to ``busy_timeout_ms`` as every
        read does."""
        self._check_open()
        try:
            return await self._point_reads.fetch(sql, params)
        except sqlite3.Error as error:
            if getattr(error, "sqlite_errorcode", 0) & 0xFF in _WAIT_CODES:
                return await self._fetch(sql, params)
            raise StorageUnavailable(f"read failed: {error}") from error

    async def _write_one(self, sql: str, params: Sequence[Any]) -> int:
        """One statement: nothing to undo but what SQLite undoes by itself."""
        return await self._job_without_savepoint(_changed_rows, sql, params)

    async def record_notification(
        self, record: NotificationRecord, events: Sequence[ConsentEvent] = ()
    ) -> RecordOutcome:
        """Without events (the common case), written with the rest of its batch, in bulk."""
        row = notification_row(record)
        if events:
            at = to_millis(record.received_at)
            notification_id, duplicate = await self._job(notifications.record, row, events, at)
        else:
            self._check_open()
            bulk = notifications.RECORD_NOTIFICATIONS
            notification_id, duplicate = await self._writer.run_bulk(bulk, row)
        return RecordOutcome(notification_id=notification_id, duplicate=duplicate)

    async def prune_notifications(self, signed_before: datetime) -> int:
        """As ``Store.prune_notifications`` says, in one writer job."""
        return await self._job(notifications.prune, to_millis(signed_before))

    async def append_consent_events(
        self, events: Sequence[ConsentEvent], recorded_at: datetime
    ) -> list[ConsentState]:
        """As ``Store.append_consent_events`` says, in one writer job."""
        return await self._job(consents.append_events, events, to_millis(recorded_at))

    async def record_subscribe_report(
        self, report: SubscribeReport, events: Sequence[ConsentEvent], answer: ReportAnswer
    ) -> ReportOutcome:
        """As ``Store.record_subscribe_report`` says; ``answer`` runs once, on the writer."""
        return await self._job(reports.record, report, events, answer)

    async def consent_summaries(
        self, app_id: str, channel: str, template_id: str, user_ids: Sequence[str]
    ) -> dict[str, ConsentSummary]:
        """In chunks of at most ``_MAX_SQL_PARAMS`` users, each one statement."""
        found: dict[str, ConsentSummary] = {}
        for start in range(0, len(user_ids), _MAX_SQL_PARAMS):
            chunk = user_ids[start : start + _MAX_SQL_PARAMS]
            sql = _summaries_sql(len(chunk))
            rows = await self._fetch(sql, (app_id, channel, template_id, *chunk))
            found.update((row[8], summary_from_row(row)) for row in rows)
        return found

    async def reserve_send(
        self, reservation: SendReservation, *, begin: bool = False
    ) -> ReserveOutcome:
        """Every refusal of a reservation comes before its first write."""
        return await self._job_without_savepoint(outbox.reserve, reservation, begin=begin)

    async def begin_attempt(
        self, message_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> MessageRecord | None:
        """One statement: nothing to undo but what SQLite undoes by itself."""
        operation = outbox.begin_attempt
        return await self._job_without_savepoint(operation, message_id, owner, now, lease_until)

    async def finish_attempt(
        self, message_id: str, result: AttemptResult, now: datetime
    ) -> MessageRecord:
        """It refuses (an unknown message) only when its update changed nothing."""
        return await self._job_without_savepoint(outbox.finish_attempt, message_id, result, now)

    async def settle_message(
        self, app_id: str, message_id: str, settlement: Settlement
    ) -> MessageRecord | None:
        """As ``Store.settle_message`` says, in one writer job."""
        return await self._job(settle_message, app_id, message_id, settlement)

    async def claim_due_messages(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[MessageRecord]:
        """As ``Store.claim_due_messages`` says: the writer alone leases, so no row locks."""
        return await self._job(outbox.claim_due, owner, now, lease_until, limit)

    async def abandon_in_flight(self, now: datetime) -> list[str]:
        """As ``Store.abandon_in_flight`` says, in one writer job."""
        return await self._job(outbox.abandon_in_flight, now)

    async def add_refusals(self, counts: Mapping[tuple[str, str], int], at: datetime) -> None:
        """As ``Store.add_refusals`` says, in one writer job."""
        await self._job(notifications.add_refusals, refusal_rows(counts, at))

    async def fan_out(self, destination: str, wants: EventFilter, now: datetime, limit: int) -> int:
        """As ``Store.fan_out`` says, in one writer job (``wants`` runs on the writer thread)."""
        return await self._job(deliveries.fan_out, destination, wants, now, limit)

    async def claim_deliveries(
        self, destination: str, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        """As ``Store.claim_deliveries`` says: the writer alone leases, so no row locks."""
        operation = deliveries.claim
        rows = await self._job(operation, destination, owner, now, lease_until, limit)
        return [claimed(row) for row in rows]

    async def finish_deliveries(self, owner: str, results: Sequence[DeliveryResult]) -> int:
        """As ``Store.finish_deliveries`` says, every result in one writer job."""
        return await self._job(deliveries.finish, owner, results)

    async def advance_deliveries(self, work: DeliveryRound, wants: EventFilter) -> RoundOutcome:
        """As ``Store.advance_deliveries`` says, in one writer job."""
        read, applied, rows = await self._job(deliveries.advance, work, wants)
        return RoundOutcome(read, applied, [claimed(row) for row in rows])

    async def replay_delivery(self, destination: str, event_id: int, now: datetime) -> bool:
        """As ``Store.replay_delivery`` says, in one writer job."""
        return await self._job(deliveries.replay, destination, event_id, now)

    async def replay_since(
        self, destination: str, since: datetime, wants: EventFilter, now: datetime
    ) -> int:
        """As ``Store.replay_since`` says, in one writer job."""
        return await self._job(deliveries.replay_since, destination, since, wants, now)


def _bound(
    operation: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
) -> WriteJob[T]:
    """``operation`` with everything but the writer's connection given: a writer job."""
    return lambda connection: operation(connection, *args, **kwargs)


def _changed_rows(connection: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    return connection.execute(sql, params).rowcount


@cache
def _summaries_sql(count: int) -> str:
    """The summaries of ``count`` users: one text per chunk size, rendered once."""
    return SQLITE.render(f"{LEDGER.summaries_of_users} IN ({marks(count)})")
