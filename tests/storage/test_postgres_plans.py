"""On PostgreSQL, statements that look rows up by a list of keys find each by its key, whatever
the statistics say. Written as ``key = ANY(...)``, they were planned as scans once a table had
grown since an ANALYZE that saw it nearly empty (as after a deployment's first): a finished
batch read every delivery, a bulk lookup every key of the template. Each is watched through
``auto_explain`` on the connection it runs on: a plan led by the key reads only the rows it
answers with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from storage import open_store
from storage.models import (
    AttemptOutcome,
    AttemptResult,
    ClaimedDelivery,
    DeliveryVerdict,
    MessageStatus,
    ReserveOutcome,
    SendReservation,
)
from storage.postgres import deliveries, reservations
from storage.postgres.connection import Conn
from storage.postgres.outcomes import OutcomeBatches
from storage.postgres.reservation_batches import Reserving, reserve_many
from storage.postgres.summaries import summaries_of_users
from storage.sql.ledger import STATE_COLUMNS
from storage.sql.outbox import MESSAGE_COLUMNS, MESSAGE_NAMES
from tests.storage.event_log import claim, fanned_out, outcome, started
from tests.storage.pg_plans import (
    OTHER_USERS,
    examined_by_scan,
    ledger_grown_past_its_statistics,
    pooled_connection,
    rows_examined,
    watched_plans,
    watched_pool,
)
from tests.storage.records import APP, NOW, TEMPLATE, USER, accept, notification, reservation

HELD = 300  # a batch large enough that reading every delivery looks cheaper without statistics
OTHER_DELIVERIES = 20_000


@pytest.fixture
async def grown(postgres_url: str) -> AsyncIterator[tuple[Conn, list[ClaimedDelivery]]]:
    """The deliveries table analysed while it held one row, then grown by ``HELD`` deliveries
    claimed by ``worker-a`` and many of other destinations: statistics that see a nearly empty
    table, as after a deployment's first ANALYZE."""
    store = await open_store(postgres_url)
    await started(store)
    await store.record_notification(notification("n-first"))
    await fanned_out(store)
    async with pooled_connection(postgres_url) as connection:
        await connection.execute("ANALYZE deliveries")
        for number in range(1, HELD):
            await store.record_notification(notification(f"n-{number}"))
        await fanned_out(store, limit=HELD)
        claimed = await claim(store, limit=HELD)
        await store.close()
        await connection.execute(
            "INSERT INTO deliveries (destination, event_txid, event_id, app_id, user_id, status, "
            "attempts, next_attempt_at, retry_since, created_at, updated_at) "
            "SELECT 'other-' || n, event_txid, event_id, app_id, user_id, 'delivered', 1, "
            "next_attempt_at, retry_since, created_at, updated_at "
            "FROM deliveries, generate_series(1, $1) AS n",
            OTHER_DELIVERIES // HELD,
        )
        yield connection, claimed


async def test_a_finish_finds_the_deliveries_it_holds_by_their_keys(
    grown: tuple[Conn, list[ClaimedDelivery]],
) -> None:
    connection, claimed = grown
    results = [outcome(c, DeliveryVerdict.DELIVERED) for c in claimed]

    async with watched_plans(connection, "lease_owner") as plans, connection.transaction():
        applied = await deliveries.finish(connection, "worker-a", results)

    assert applied == len(claimed) == HELD
    [held] = [plan for plan in plans if "FOR UPDATE" in plan]
    assert rows_examined(held, "deliveries") == HELD, held
    ids = [c.delivery.id for c in claimed]
    statuses = await connection.fetch("SELECT status FROM deliveries WHERE id = ANY($1)", ids)
    assert {row["status"] for row in statuses} == {"delivered"}


@pytest.fixture
async def grown_ledger(postgres_url: str) -> AsyncIterator[Conn]:
    columns = STATE_COLUMNS.split(", ")
    async with ledger_grown_past_its_statistics(postgres_url, "consents", columns) as connection:
        yield connection


async def test_a_bulk_lookup_reads_each_user_by_its_key(grown_ledger: Conn) -> None:
    users = [USER, "u1", f"u{OTHER_USERS}", "nobody"]

    async with watched_plans(grown_ledger, "FROM consents", generic=True) as plans:
        found = await summaries_of_users(grown_ledger, APP, "mini_template", TEMPLATE, users)

    assert sorted(found) == sorted(users[:3])
    assert [s.credits for s in found.values()] == [1, 1, 1]
    [plan] = plans
    assert rows_examined(plan, "consents") <= len(users), plan  # per-loop rows are rounded


async def test_a_reservation_for_several_recipients_reads_each_by_its_key(
    grown_ledger: Conn,
) -> None:
    recipients = (USER, "u1", f"u{OTHER_USERS}")
    send = SendReservation.model_validate(
        reservation().model_dump() | {"recipients": recipients, "consent_mode": "split"}
    )

    watched = watched_plans(grown_ledger, "consents", generic=True)
    async with watched as plans, grown_ledger.transaction():
        outcome = await reservations.reserve(grown_ledger, send, begin=False)

    assert outcome is not None and outcome.message.allowed == recipients
    assert len(plans) == 2  # the read, then the write
    for plan in plans:
        assert 0 < max(examined_by_scan(plan, "consents")) <= len(recipients), plan


async def test_a_batch_of_reservations_reads_and_writes_each_key_by_its_key(
    grown_ledger: Conn,
) -> None:
    users = (USER, "u1", f"u{OTHER_USERS}")
    loop = asyncio.get_running_loop()
    items = [
        Reserving(reservation(f"k-{user}", user_id=user), False, loop.create_future())
        for user in users
    ]

    watched = watched_plans(grown_ledger, "consents", generic=True)
    async with watched as plans, grown_ledger.transaction():
        answers = await reserve_many(grown_ledger, items)

    assert all(isinstance(a, ReserveOutcome) for a in answers), answers
    assert len(plans) == 2  # the read, then the write
    for plan in plans:
        assert 0 < max(examined_by_scan(plan, "consents")) <= len(users), plan


BATCH = 40  # outcomes finished at once: every one is written in one or two batches


@pytest.fixture
async def sending(postgres_url: str) -> AsyncIterator[list[str]]:
    """``BATCH`` messages in flight, ``messages`` analysed while it held one, then grown by
    other apps' messages: the ids of those in flight."""
    store = await open_store(postgres_url)
    users = [f"s{n}" for n in range(BATCH)]
    await store.append_consent_events([accept(0, user_id=user) for user in users], NOW)
    first = await store.reserve_send(reservation("k-first", user_id=users[0]), begin=True)
    async with pooled_connection(postgres_url) as connection:
        await connection.execute("ANALYZE messages")
        ids = [first.message.id]
        for number, user in enumerate(users[1:]):
            made = await store.reserve_send(reservation(f"k-{number}", user_id=user), begin=True)
            ids.append(made.message.id)
        await store.close()
        await connection.execute(
            f"INSERT INTO messages ({MESSAGE_COLUMNS}) SELECT {_OTHER_MESSAGE} "  # noqa: S608
            "FROM messages, generate_series(1, $1) AS n",
            OTHER_MESSAGES // BATCH,
        )
        yield ids


OTHER_MESSAGES = 20_000
# Each copy another app's, under its own id and key, already sent.
_OTHER_MESSAGE = ", ".join(
    {
        "id": "id || '-' || n",
        "app_id": "'other-' || n",
        "status": "'sent'",
        "lease_owner": "NULL",
        "lease_until": "NULL",
    }.get(name, name)
    for name in MESSAGE_NAMES
)


async def test_a_batch_of_outcomes_reads_each_message_by_its_key(
    postgres_url: str, sending: list[str]
) -> None:
    sent = AttemptResult(outcome=AttemptOutcome.SENT, platform_code="10000")
    later = NOW + timedelta(hours=2)

    async with watched_pool(postgres_url, "messages", generic=True) as (pool, plans):
        batches = OutcomeBatches(pool, retries=1)
        stored = await asyncio.gather(*(batches.finish(id_, sent, later) for id_ in sending))

    assert {message.status for message in stored} == {MessageStatus.SENT}
    written = [plan for plan in plans if "UPDATE messages" in plan.split("\n", 2)[1]]
    assert written
    for plan in written:
        assert max(examined_by_scan(plan, "messages")) <= BATCH, plan
