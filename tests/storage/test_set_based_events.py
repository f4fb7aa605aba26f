"""Events and totals written for many rows at once (``0012_set_based_triggers`` on PostgreSQL,
the writer's jobs on SQLite): a batch of notifications gets one ``notification.received`` each,
in the order of the notifications' ids, none for a duplicate; totals moved by several processes
equal a recount of the rows; and a database written before 0012 keeps both after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from storage import Store, open_store
from storage.migrations import migrations_for
from storage.models import AttemptOutcome, AttemptResult, DeliveryVerdict, RecordOutcome
from storage.postgres import PostgresStore
from storage.postgres.intake_rows import Arrival, BatchAttempt, write_batch
from storage.sql.dialect import POSTGRES
from storage.sql.notification_rows import notification_row
from storage.sql.outbox_rows import finish_values, new_message_row
from storage.sql.statements import statements_for
from tests.storage.event_log import HOOK, claim, fanned_out, log, outcome, started
from tests.storage.records import APP, NOW, USER, accept, notification, reservation
from tests.storage.test_console_counts_contract import LATER, counted, long_term
from tests.storage.test_delivery_counts_contract import kept, walked
from tests.storage.test_notification_batch_contract import batches

SQL = statements_for(POSTGRES)
_RECORD = "INSERT INTO schema_migrations VALUES ($1, $2, 0)"
_OLD_DELIVERIES = (
    "INSERT INTO deliveries (destination, event_txid, event_id, app_id, user_id, status, "
    "attempts, next_attempt_at, retry_since, created_at, updated_at) "
    "SELECT $1, txid, id, app_id, user_id, 'pending', 0, $2, $2, $2, $2 FROM events"
)
_OLD_CURSOR = (
    "INSERT INTO destination_cursors (destination, txid, event_id) "
    "SELECT $1, txid, id FROM events ORDER BY txid DESC, id DESC LIMIT 1"
)
_VERSIONS = (
    "CREATE TABLE schema_migrations "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
)


async def received_ids(store: Store) -> list[int]:
    """The notification of each ``notification.received`` event, in the log's order."""
    return [e.notification.id for e in await log(store) if e.notification is not None]


async def test_a_batch_writes_one_event_per_new_notification_in_their_order(store: Store) -> None:
    for key in ("before-1", "before-2"):
        await store.record_notification(notification(key))
    keys = ["n-5", "before-2", "n-3", "n-5", "n-4", "before-1", "n-6", "n-3"]
    started_at = batches(store)

    answers = await asyncio.gather(*(store.record_notification(notification(k)) for k in keys))

    assert batches(store) - started_at < len(keys)  # they were written together
    stored = {k: a.notification_id for k, a in zip(keys, answers, strict=True)}
    assert [a.duplicate for a in answers] == [False, True, False, True, False, True, False, True]
    ids = await received_ids(store)
    assert ids == sorted(set(stored.values()))  # one each, in the order of the ids
    new = [stored[k] for k in ("n-3", "n-4", "n-5", "n-6")]
    assert ids[-4:] == sorted(new)


@pytest.fixture
async def two(postgres_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one schema, each with its own pool: two Subgate processes."""
    first, second = await open_store(postgres_url), await open_store(postgres_url)
    yield first, second
    await first.close()
    await second.close()


async def test_one_insert_of_a_batch_writes_its_events_in_one_statement(
    two: tuple[Store, Store],
) -> None:
    store, _ = two
    assert isinstance(store, PostgresStore)
    first = await store.record_notification(notification("before"))
    arrivals = [Arrival(notification(k)) for k in ("c", "before", "a", "b", "a")]
    async with store.pool.acquire() as connection, connection.transaction():
        outcomes = await write_batch(connection, arrivals, BatchAttempt())
        rows = await connection.fetch(
            "SELECT notification_id, txid, pg_current_xact_id()::text::bigint FROM events "
            "WHERE notification_id <> $1 ORDER BY id",
            first.notification_id,
        )

    new = {
        a.record.dedupe_key: o.notification_id
        for a, o in zip(arrivals, outcomes, strict=True)
        if _new(o)
    }
    assert sorted(new) == ["a", "b", "c"]
    assert [row[0] for row in rows] == [new["a"], new["b"], new["c"]]  # key order, as inserted
    assert {(row[1], row[2]) for row in rows} == {(rows[0][2], rows[0][2])}  # the batch's txid
    assert await received_ids(store) == [first.notification_id, new["a"], new["b"], new["c"]]


def _new(answer: RecordOutcome) -> bool:
    return not answer.duplicate


async def test_totals_moved_by_two_processes_equal_a_recount(two: tuple[Store, Store]) -> None:
    """Messages made by one process and finished by the other, six left in flight and then
    abandoned by one multi-row update; deliveries of mixed verdicts in each call."""
    one, other = two
    await one.append_consent_events([accept(template_id="T-long")], NOW)
    made = await asyncio.gather(
        *((one, other)[i % 2].reserve_send(long_term(f"k-{i}"), begin=True) for i in range(24))
    )
    results = [AttemptOutcome.SENT, AttemptOutcome.REJECTED, AttemptOutcome.RETRY]
    await asyncio.gather(
        *(
            (other, one)[i % 2].finish_attempt(
                o.message.id, AttemptResult(outcome=results[i % 3]), LATER
            )
            for i, o in enumerate(made[:18])
        )
    )
    assert len(await one.abandon_in_flight(LATER + timedelta(hours=1))) == 6

    assert await one.message_counts_of_app(APP) == await counted(one)
    assert await counted(one) == {
        ("mini_template", status): 6 for status in ("sent", "failed", "queued", "unknown")
    }
    assert len([e for e in await log(one) if e.type == "message.updated"]) == 24

    await started(one)
    for number in range(20):
        await (one, other)[number % 2].record_notification(notification(f"n-{number}"))
    await fanned_out(other)
    verdicts = [DeliveryVerdict.RETRY, DeliveryVerdict.DEAD, DeliveryVerdict.DELIVERED]
    for store in (one, other):
        claimed = await claim(store, owner="worker-a", limit=9)
        mixed = [outcome(c, verdicts[i % 3], at=NOW, retry_at=LATER) for i, c in enumerate(claimed)]
        await store.finish_deliveries("worker-a", mixed)
    assert await kept(one) == await walked(one) == (8, 6, 6)


async def as_of_0011(url: str) -> list[str]:
    """A schema migrated to 0011 holding rows its row triggers wrote and counted: two
    notifications and their events, three messages in flight (two then sent), and a delivery
    of each event, pending. The messages' ids."""
    messages = [reservation(f"old-{number}") for number in range(3)]
    sent = AttemptResult(outcome=AttemptOutcome.SENT, platform_code="10000")
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(_VERSIONS)
        for migration in migrations_for("postgres")[:11]:
            await connection.execute(migration.sql)
            await connection.execute(_RECORD, migration.version, migration.name)
        for key in ("old-1", "old-2"):
            await connection.execute(SQL.notifications.insert_notification, *_row(key))
        for message in messages:
            row = new_message_row(message, [USER], [], begun=True)
            await connection.execute(SQL.outbox.insert_message, *row)
        for message in messages[:2]:
            _, params = finish_values(message.message_id, sent, LATER)
            await connection.execute(SQL.outbox.finish_attempt, *params)
        await connection.execute(_OLD_DELIVERIES, HOOK, int(NOW.timestamp() * 1000))
        await connection.execute(_OLD_CURSOR, HOOK)
    finally:
        await connection.close()
    return [message.message_id for message in messages]


def _row(key: str) -> tuple[object, ...]:
    return notification_row(notification(key))


async def test_rows_from_before_0012_keep_their_events_and_totals(postgres_url: str) -> None:
    ids = await as_of_0011(postgres_url)
    store = await open_store(postgres_url)  # applies 0012
    try:
        retry = AttemptResult(outcome=AttemptOutcome.RETRY, next_attempt_at=LATER)
        await store.finish_attempt(ids[2], retry, LATER)
        await asyncio.gather(*(store.record_notification(notification(k)) for k in "abc"))
        assert await fanned_out(store) == 4  # the new notifications and message.updated
        claimed = await claim(store)
        verdicts = [DeliveryVerdict.DELIVERED, DeliveryVerdict.RETRY, DeliveryVerdict.DEAD]
        results = [outcome(c, verdicts[i % 3], at=NOW, retry_at=NOW) for i, c in enumerate(claimed)]
        await store.finish_deliveries("worker-a", results)

        assert await store.message_counts_of_app(APP) == await counted(store)
        assert await counted(store) == {
            ("mini_template", "sent"): 2,
            ("mini_template", "queued"): 1,
        }
        assert await kept(store) == await walked(store)
        ids_received = await received_ids(store)
        assert ids_received == sorted(ids_received) and len(ids_received) == 5
    finally:
        await store.close()
