"""PostgresStore: one PostgreSQL database shared by any number of Subgate processes.

Every guarantee comes from PostgreSQL itself, so it holds across processes and hosts: unique
constraints for idempotency (``INSERT ... ON CONFLICT DO NOTHING RETURNING``), row locks on the
consent projection for spend-once and for a projection always equal to the fold, and
``FOR UPDATE SKIP LOCKED`` with leases for the outbox and the deliveries of events. Writes run in
READ COMMITTED transactions through ``transact`` (bounded retry on serialization failure or
deadlock); reads are single statements, most of them shared with SQLite (``storage.sql.reads``).
Times are BIGINT epoch milliseconds, as in the SQLite store.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

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
from storage.postgres import consents, deliveries, outbox, sends
from storage.postgres.batches import NotificationBatches
from storage.postgres.connection import (
    DATABASE_ERRORS,
    Conn,
    Job,
    Pool,
    PostgresOptions,
    T,
    describe,
    fetch,
    open_pool,
    transact,
)
from storage.postgres.key_reads import KeyReads
from storage.postgres.migrate import apply_migrations
from storage.postgres.outcomes import OutcomeBatches
from storage.postgres.report_batches import ReportBatches
from storage.postgres.reservation_batches import ReservationBatches
from storage.postgres.settle import settle_message
from storage.postgres.summaries import summaries_of_users
from storage.sql.dialect import POSTGRES
from storage.sql.notification_rows import refusal_rows
from storage.sql.reads import StoreReads
from storage.sql.reconcile_walk import ReconcileWalk
from storage.sql.rows import Row
from storage.sql.statements import statements_for
from storage.timecodec import to_millis


class PostgresStore(StoreReads, ReconcileWalk):
    """The ``Store`` of one PostgreSQL schema, shared by every process that opens it."""

    _sql = statements_for(POSTGRES)

    def __init__(self, pool: Pool, options: PostgresOptions) -> None:
        self._pool = pool
        self._retries = options.retries
        self._closed = False
        self._observer: CommitObserver | None = None
        self._batches = NotificationBatches(pool, options.retries)
        self._outcomes = OutcomeBatches(pool, options.retries)
        self._reservations = ReservationBatches(pool, options.retries)
        self._reports = ReportBatches(pool, options.retries)
        self._key_reads = KeyReads(pool)

    @classmethod
    async def open(cls, options: PostgresOptions) -> PostgresStore:
        """Open the pool and bring the schema up to date (once, whoever else starts now)."""
        pool = await open_pool(options)
        try:
            async with pool.acquire() as connection:
                await apply_migrations(connection)
        except DATABASE_ERRORS as error:
            pool.terminate()
            raise StorageUnavailable(f"cannot migrate: {describe(error)}") from error
        except BaseException:
            pool.terminate()
            raise
        return cls(pool, options)

    @property
    def pool(self) -> Pool:
        """The connection pool (for tests and maintenance)."""
        return self._pool

    @property
    def batches(self) -> NotificationBatches:
        """The group commit of notifications (its counters, for tests and the bench)."""
        return self._batches

    @property
    def outcomes(self) -> OutcomeBatches:
        """The group commit of attempt outcomes (its counters, for tests and the bench)."""
        return self._outcomes

    @property
    def reports(self) -> ReportBatches:
        """The group commit of subscribe reports (its counters, for tests and the bench)."""
        return self._reports

    @property
    def reservations(self) -> ReservationBatches:
        """The group commit of send reservations (its counters, for tests and the bench)."""
        return self._reservations

    async def close(self) -> None:
        """Wait for connections in use, then close the pool. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for batches in (self._batches, self._outcomes, self._reservations, self._reports):
            await batches.drain()
        await self._pool.close()

    async def _fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        return await fetch(self._pool, sql, *params)

    async def _fetch_key(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        """One key's row, read with the turn's other keys (``storage.postgres.key_reads``)."""
        return await self._key_reads.fetch(sql, params)

    async def _write_one(self, sql: str, params: Sequence[Any]) -> int:
        """One statement, no BEGIN and COMMIT around it."""

        async def job(connection: Conn) -> int:
            status = await connection.execute(sql, *params)
            return int(status.split()[-1])  # "UPDATE <count>"

        return await self._transact(job, atomic=False)

    def observe_commits(self, observer: CommitObserver) -> None:
        """As ``Store.observe_commits`` says: after each committed transaction."""
        self._observer = observer
        for batches in (self._batches, self._outcomes, self._reservations, self._reports):
            batches.observe = observer

    async def _transact(self, job: Job[T], *, atomic: bool = True) -> T:
        started = time.perf_counter()
        result = await transact(self._pool, job, retries=self._retries, atomic=atomic)
        if self._observer is not None:
            self._observer(time.perf_counter() - started, 1)
        return result

    async def record_notification(
        self, record: NotificationRecord, events: Sequence[ConsentEvent] = ()
    ) -> RecordOutcome:
        """As ``Store.record_notification`` says, in the next group commit (``batches``); a
        connection lost around its COMMIT is settled by ``lost_commits``."""
        if self._closed:
            raise StorageUnavailable("the store is closed")
        return await self._batches.record(record, events)

    async def prune_notifications(self, signed_before: datetime) -> int:
        """As ``Store.prune_notifications`` says, in one transaction."""
        prune = self._sql.notifications.prune_notifications

        async def job(connection: Conn) -> int:
            status = await connection.execute(prune, to_millis(signed_before))
            return int(status.split()[-1])  # "DELETE <count>"

        return await self._transact(job)

    async def append_consent_events(
        self, events: Sequence[ConsentEvent], recorded_at: datetime
    ) -> list[ConsentState]:
        """As ``Store.append_consent_events`` says, in one transaction."""
        at = to_millis(recorded_at)
        return await self._transact(
            lambda connection: consents.append_events(connection, events, at)
        )

    async def record_subscribe_report(
        self, report: SubscribeReport, events: Sequence[ConsentEvent], answer: ReportAnswer
    ) -> ReportOutcome:
        """As the protocol says, committed with concurrent reports (``report_batches``);
        ``answer`` may run again if the transaction is retried."""
        return await self._reports.record(report, events, answer)

    async def consent_summaries(
        self, app_id: str, channel: str, template_id: str, user_ids: Sequence[str]
    ) -> dict[str, ConsentSummary]:
        """One statement, the users as one array parameter (``summaries``)."""
        return await summaries_of_users(self._pool, app_id, channel, template_id, user_ids)

    async def reserve_send(
        self, reservation: SendReservation, *, begin: bool = False
    ) -> ReserveOutcome:
        """As ``Store.reserve_send`` says, in as few round trips as it allows (``sends``)."""
        return await sends.reserve_send(
            self._pool, self._transact, reservation, begin=begin, batches=self._reservations
        )

    async def begin_attempt(
        self, message_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> MessageRecord | None:
        """As ``Store.begin_attempt`` says, in one statement (no BEGIN and COMMIT around it)."""
        return await self._transact(
            lambda connection: outbox.begin_attempt(
                connection, message_id, owner, now, lease_until
            ),
            atomic=False,
        )

    async def finish_attempt(
        self, message_id: str, result: AttemptResult, now: datetime
    ) -> MessageRecord:
        """As ``Store.finish_attempt`` says: concurrent outcomes that refund nothing in one
        statement, one that refunds in a transaction (``sends``)."""
        return await sends.finish_attempt(self._transact, self._outcomes, message_id, result, now)

    async def settle_message(
        self, app_id: str, message_id: str, settlement: Settlement
    ) -> MessageRecord | None:
        """As ``Store.settle_message`` says: the message's row is locked first."""
        return await self._transact(
            lambda connection: settle_message(connection, app_id, message_id, settlement)
        )

    async def claim_due_messages(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[MessageRecord]:
        """As ``Store.claim_due_messages`` says: rows another worker is claiming are skipped."""
        return await self._transact(
            lambda connection: outbox.claim_due(connection, owner, now, lease_until, limit)
        )

    async def abandon_in_flight(self, now: datetime) -> list[str]:
        """As ``Store.abandon_in_flight`` says, in one statement."""
        return await self._transact(lambda connection: outbox.abandon_in_flight(connection, now))

    async def add_refusals(self, counts: Mapping[tuple[str, str], int], at: datetime) -> None:
        """Sorted, so that two processes adding to the same counters lock them in one order."""
        add, rows = self._sql.notifications.add_refusals, refusal_rows(counts, at)
        if not rows:
            return

        async def job(connection: Conn) -> None:
            await connection.executemany(add, rows)

        await self._transact(job)

    async def fan_out(self, destination: str, wants: EventFilter, now: datetime, limit: int) -> int:
        """As ``Store.fan_out`` says: one transaction holding the destination's cursor row."""
        return await self._transact(
            lambda connection: deliveries.fan_out(connection, destination, wants, now, limit)
        )

    async def claim_deliveries(
        self, destination: str, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        """As ``Store.claim_deliveries`` says: rows another worker is claiming are skipped."""
        return await self._transact(
            lambda connection: deliveries.claim(
                connection, destination, owner, now, lease_until, limit
            )
        )

    async def finish_deliveries(self, owner: str, results: Sequence[DeliveryResult]) -> int:
        """As ``Store.finish_deliveries`` says, every result in one transaction."""
        return await self._transact(
            lambda connection: deliveries.finish(connection, owner, results)
        )

    async def advance_deliveries(self, work: DeliveryRound, wants: EventFilter) -> RoundOutcome:
        """As ``Store.advance_deliveries`` says, in one transaction."""
        return await self._transact(lambda connection: deliveries.advance(connection, work, wants))

    async def replay_delivery(self, destination: str, event_id: int, now: datetime) -> bool:
        """As ``Store.replay_delivery`` says, in one statement."""
        return await self._transact(
            lambda connection: deliveries.replay(connection, destination, event_id, now)
        )

    async def replay_since(
        self, destination: str, since: datetime, wants: EventFilter, now: datetime
    ) -> int:
        """As ``Store.replay_since`` says, in one transaction."""
        return await self._transact(
            lambda connection: deliveries.replay_since(connection, destination, since, wants, now)
        )
