"""On PostgreSQL, finishing a batch of deliveries finds the ones its worker still holds by their
primary keys, whatever the statistics say: looked up as ``id = ANY(...)``, they were found by
reading every delivery once the table had grown since its last ANALYZE. Watched through
``auto_explain`` on the connection the finish runs on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage import open_store
from storage.models import ClaimedDelivery, DeliveryVerdict
from storage.postgres import deliveries
from storage.postgres.connection import Conn
from tests.storage.event_log import claim, fanned_out, outcome, started
from tests.storage.pg_plans import pooled_connection, rows_passed_over, watched_plans
from tests.storage.records import notification

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
    assert rows_passed_over(held) == 0, held
    ids = [c.delivery.id for c in claimed]
    statuses = await connection.fetch("SELECT status FROM deliveries WHERE id = ANY($1)", ids)
    assert {row["status"] for row in statuses} == {"delivered"}
