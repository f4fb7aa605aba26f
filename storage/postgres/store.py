"""PostgresStore: one PostgreSQL database shared by any number of Subgate processes.

Every guarantee comes from PostgreSQL itself, so it holds across processes and hosts: unique
constraints for idempotency (``INSERT ... ON CONFLICT DO NOTHING RETURNING``), row locks on the
consent projection for spend-once and for a projection always equal to the fold, and
``FOR UPDATE SKIP LOCKED`` with leases for the outbox. Writes run in READ COMMITTED
transactions through ``transact`` (bounded retry on serialization failure or deadlock); reads
are single statements. Times are BIGINT epoch milliseconds, as in the SQLite store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from storage.errors import StorageUnavailable
from storage.models import (
    AttemptResult,
    ConsentAction,
    ConsentEvent,
    ConsentState,
    ConsentSummary,
    MessageRecord,
    NotificationRecord,
    RecordOutcome,
    RefusalCount,
    ReportOutcome,
    ReserveOutcome,
    SendReservation,
    StoredConsentEvent,
    StoredNotification,
    SubscribeReport,
)
from storage.postgres import consents, lost_commits, notifications, outbox
from storage.postgres.connection import (
    DATABASE_ERRORS,
    Conn,
    Job,
    Pool,
    PostgresOptions,
    T,
    describe,
    fetch,
    fetch_value,
    open_pool,
    transact,
)
from storage.postgres.migrate import apply_migrations
from storage.timecodec import from_millis, to_millis

_ADD_REFUSALS = (
    "INSERT INTO refusal_counts (app_id, reason, count, last_at) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (app_id, reason) DO UPDATE SET count = refusal_counts.count + excluded.count, "
    "last_at = greatest(refusal_counts.last_at, excluded.last_at)"
)


class PostgresStore:
    def __init__(self, pool: Pool, options: PostgresOptions) -> None:
        self._pool = pool
        self._retries = options.retries
        self._closed = False

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
        return self._pool

    async def close(self) -> None:
        """Wait for connections in use, then close the pool. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._pool.close()

    async def ping(self) -> None:
        await fetch(self._pool, "SELECT 1")

    async def _transact(self, job: Job[T]) -> T:
        return await transact(self._pool, job, retries=self._retries)

    async def record_notification(
        self, record: NotificationRecord, events: Sequence[ConsentEvent] = ()
    ) -> RecordOutcome:
        attempt = lost_commits.CommitAttempt()

        async def job(connection: Conn) -> RecordOutcome:
            outcome = await notifications.record(connection, record, events)
            attempt.watch(connection, None if outcome.duplicate else outcome.notification_id)
            return outcome

        try:
            return await self._transact(job)
        except StorageUnavailable as error:
            if not lost_commits.is_ambiguous(error):
                raise
            settled = await lost_commits.settle(self._pool, record, attempt)
            if settled is None:
                raise
            return settled

    async def get_notification(self, app_id: str, dedupe_key: str) -> StoredNotification | None:
        rows = await fetch(
            self._pool,
            f"SELECT {notifications.COLUMNS} FROM notifications "  # noqa: S608 (constant)
            "WHERE app_id = $1 AND dedupe_key = $2",
            app_id,
            dedupe_key,
        )
        return notifications.stored_notification(rows[0]) if rows else None

    async def prune_notifications(self, signed_before: datetime) -> int:
        async def job(connection: Conn) -> int:
            status = await connection.execute(
                "DELETE FROM notifications WHERE occurred_at IS NOT NULL AND occurred_at < $1",
                to_millis(signed_before),
            )
            return int(status.split()[-1])  # "DELETE <count>"

        return await self._transact(job)

    async def count_notifications(self, app_id: str | None = None) -> int:
        if app_id is None:
            return int(await fetch_value(self._pool, "SELECT count(*) FROM notifications"))
        return int(
            await fetch_value(
                self._pool, "SELECT count(*) FROM notifications WHERE app_id = $1", app_id
            )
        )

    async def consent_events(self, app_id: str, user_id: str | None = None) -> list[ConsentEvent]:
        sql = f"SELECT {consents.EVENT_COLUMNS} FROM consent_events WHERE app_id = $1"  # noqa: S608
        args: tuple[str, ...] = (app_id,)
        if user_id is not None:
            sql += " AND user_id = $2"
            args += (user_id,)
        rows = await fetch(self._pool, sql + " ORDER BY occurred_at, id", *args)
        return [consents.event_from_row(row) for row in rows]

    async def append_consent_events(
        self, events: Sequence[ConsentEvent], recorded_at: datetime
    ) -> list[ConsentState]:
        async def job(connection: Conn) -> list[ConsentState]:
            return await consents.append_events(connection, events, to_millis(recorded_at))

        return await self._transact(job)

    async def record_subscribe_report(
        self,
        report: SubscribeReport,
        events: Sequence[ConsentEvent],
        answer: Callable[[int, list[ConsentState]], str],
    ) -> ReportOutcome:
        """As the protocol says; ``answer`` may run again if the transaction is retried."""

        async def job(connection: Conn) -> ReportOutcome:
            return await notifications.record_report(connection, report, events, answer)

        return await self._transact(job)

    async def consent_states(
        self, app_id: str, user_id: str, channel: str | None = None, template_id: str | None = None
    ) -> list[ConsentState]:
        sql = f"SELECT {consents.STATE_COLUMNS} FROM consents WHERE app_id = $1 AND user_id = $2"  # noqa: S608
        args: list[str] = [app_id, user_id]
        for column, value in (("channel", channel), ("template_id", template_id)):
            if value is not None:
                args.append(value)
                sql += f" AND {column} = ${len(args)}"
        rows = await fetch(self._pool, sql + " ORDER BY channel, template_id", *args)
        return [consents.state_from_row(row) for row in rows]

    async def consent_summary(
        self, app_id: str, user_id: str, channel: str, template_id: str
    ) -> ConsentSummary | None:
        rows = await fetch(
            self._pool,
            f"SELECT {consents.SUMMARY_COLUMNS} FROM consents WHERE {consents.KEY_WHERE}",  # noqa: S608
            app_id,
            user_id,
            channel,
            template_id,
        )
        return consents.summary_from_row(rows[0]) if rows else None

    async def consent_summaries(
        self, app_id: str, channel: str, template_id: str, user_ids: Sequence[str]
    ) -> dict[str, ConsentSummary]:
        rows = await fetch(
            self._pool,
            f"SELECT user_id, {consents.SUMMARY_COLUMNS} FROM consents "  # noqa: S608 (constant)
            "WHERE app_id = $1 AND channel = $2 AND template_id = $3 AND user_id = ANY($4::text[])",
            app_id,
            channel,
            template_id,
            list(user_ids),
        )
        return {row["user_id"]: consents.summary_from_row(row) for row in rows}

    async def consent_history(
        self, app_id: str, user_id: str, channel: str, template_id: str
    ) -> list[StoredConsentEvent]:
        rows = await fetch(
            self._pool, consents.history_query(), app_id, user_id, channel, template_id
        )
        return consents.stored_events_in_order(rows)

    async def recent_actions(
        self, app_id: str, channel: str, action: ConsentAction, since: datetime
    ) -> int:
        cutoff = to_millis(since)
        return int(
            await fetch_value(
                self._pool,
                "SELECT count(*) FROM consent_events WHERE app_id = $1 AND channel = $2 "
                "AND action = $3 AND (occurred_at >= $4 OR recorded_at >= $4)",
                app_id,
                channel,
                action.value,
                cutoff,
            )
        )

    async def reserve_send(
        self, reservation: SendReservation, *, begin: bool = False
    ) -> ReserveOutcome:
        existing = await self._message_by_key(reservation.app_id, reservation.idempotency_key)
        if existing is None:

            async def job(connection: Conn) -> ReserveOutcome:
                return await outbox.reserve(connection, reservation, begin=begin)

            try:
                return await self._transact(job)
            except outbox.KeyTaken:  # rolled back: answer from the request that took the key
                existing = await self._message_by_key(
                    reservation.app_id, reservation.idempotency_key
                )
                if existing is None:  # taken by a transaction that then rolled back: unlikely
                    raise StorageUnavailable("the idempotency key is being used; retry") from None
        return outbox.replay(existing, reservation)

    async def _message_by_key(self, app_id: str, idempotency_key: str) -> MessageRecord | None:
        rows = await fetch(self._pool, outbox.SELECT_BY_KEY, app_id, idempotency_key)
        return outbox.message_from_row(rows[0]) if rows else None

    async def begin_attempt(
        self, message_id: str, owner: str, now: datetime, lease_until: datetime
    ) -> MessageRecord | None:
        async def job(connection: Conn) -> MessageRecord | None:
            return await outbox.begin_attempt(connection, message_id, owner, now, lease_until)

        return await self._transact(job)

    async def finish_attempt(
        self, message_id: str, result: AttemptResult, now: datetime
    ) -> MessageRecord:
        async def job(connection: Conn) -> MessageRecord:
            return await outbox.finish_attempt(connection, message_id, result, now)

        return await self._transact(job)

    async def claim_due_messages(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[MessageRecord]:
        async def job(connection: Conn) -> list[MessageRecord]:
            return await outbox.claim_due(connection, owner, now, lease_until, limit)

        return await self._transact(job)

    async def abandon_in_flight(self, now: datetime) -> list[str]:
        async def job(connection: Conn) -> list[str]:
            return await outbox.abandon_in_flight(connection, now)

        return await self._transact(job)

    async def get_message(self, app_id: str, message_id: str) -> MessageRecord | None:
        rows = await fetch(
            self._pool,
            f"SELECT {outbox.COLUMNS} FROM messages WHERE app_id = $1 AND id = $2",  # noqa: S608
            app_id,
            message_id,
        )
        return outbox.message_from_row(rows[0]) if rows else None

    async def count_messages(self, status: str | None = None) -> int:
        if status is None:
            return int(await fetch_value(self._pool, "SELECT count(*) FROM messages"))
        return int(
            await fetch_value(self._pool, "SELECT count(*) FROM messages WHERE status = $1", status)
        )

    async def message_counts(self) -> dict[tuple[str, str], int]:
        rows = await fetch(
            self._pool, "SELECT channel, status, count(*) FROM messages GROUP BY 1, 2"
        )
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def users_with_open_consent(self, limit: int) -> list[tuple[str, str]]:
        rows = await fetch(
            self._pool,
            "SELECT app_id, user_id FROM consents WHERE channel = 'mini_template' "
            "AND (credits > 0 OR status = 'subscribed') "
            "GROUP BY app_id, user_id ORDER BY min(updated_at), app_id, user_id LIMIT $1",
            limit,
        )
        return [(row["app_id"], row["user_id"]) for row in rows]

    async def add_refusals(self, counts: Mapping[tuple[str, str], int], at: datetime) -> None:
        # Sorted, so that two processes flushing the same keys lock them in the same order.
        rows = [(app, reason, n, to_millis(at)) for (app, reason), n in sorted(counts.items()) if n]
        if not rows:
            return

        async def job(connection: Conn) -> None:
            await connection.executemany(_ADD_REFUSALS, rows)

        await self._transact(job)

    async def refusal_counts(self) -> list[RefusalCount]:
        rows = await fetch(
            self._pool,
            "SELECT app_id, reason, count, last_at FROM refusal_counts ORDER BY app_id, reason",
        )
        return [
            RefusalCount(
                app_id=r["app_id"], reason=r["reason"], count=r["count"], last_at=from_millis(r[3])
            )
            for r in rows
        ]
