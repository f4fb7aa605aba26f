"""A send's reservation on PostgreSQL, alone or in a batch, finds a replay through the message's
key, whatever the table held when its plan was made.

A connection keeps the plan it made for a statement. Made while ``messages`` was small (a new
schema: every index led by ``app_id`` then looks as cheap as every other), the reservation's
read could look its idempotency key up through one led by ``app_id`` alone and read every
message of the app at each reservation from then on. This makes the read's plan on a small
table, adds 20,000 messages of the app, and watches the same connection's next read through
``auto_explain`` (its plans sent to this connection as notices).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from storage import open_store
from storage.errors import ConsentRequired
from storage.models import ReserveOutcome
from storage.postgres import reservations
from storage.postgres.connection import Conn
from storage.postgres.reservation_batches import Reserving, reserve_many
from storage.timecodec import to_millis
from tests.storage.pg_plans import pooled_connection, rows_examined, watched_plans
from tests.storage.records import APP, NOW, accept, reservation

OTHER_MESSAGES = 20_000
SECOND = "2088000000000002"
WITHOUT_CREDIT = "2088000000000003"
SMALL = 150  # messages when the plan is made: a dozen pages or so, as in a new schema


async def add_messages(connection: Conn, prefix: str, count: int) -> None:
    await connection.execute(
        "INSERT INTO messages (id, app_id, idempotency_key, request_sha256, channel, user_id, "
        "template_id, payload, status, attempts, next_attempt_at, created_at, updated_at) "
        "SELECT 'msg_' || $4 || n, $1, $4 || n, '', 'mini_template', 'u' || n, 't', "
        "repeat('x', 600), 'sent', 1, 0, $2, $2 FROM generate_series(1, $3) AS n",
        APP,
        to_millis(NOW),
        count,
        prefix,
    )


@pytest.fixture
async def planned_small(postgres_url: str) -> AsyncIterator[Conn]:
    """One connection whose reservation reads (alone and batched) were planned while
    ``messages`` was small, as a new schema's are in its first seconds (analysed empty, a few
    pages written since), the table holding 20,000 more messages of the app since."""
    store = await open_store(postgres_url)
    await store.append_consent_events([accept(0), accept(0, user_id=SECOND)], NOW)
    await store.close()
    async with pooled_connection(postgres_url) as connection:
        await connection.execute("ANALYZE; SET plan_cache_mode = force_generic_plan")
        await add_messages(connection, "early-", SMALL)
        assert await reservations.reserve(connection, reservation("k-first"), begin=False)
        planned = reservation("k-planned", user_id=WITHOUT_CREDIT)  # plans the batch read too
        future = asyncio.get_running_loop().create_future()
        [refused] = await reserve_many(connection, [Reserving(planned, False, future)])
        assert isinstance(refused, ConsentRequired)
        await add_messages(connection, "other-", OTHER_MESSAGES)
        yield connection


async def test_the_key_is_looked_up_by_its_index_on_a_table_grown_since_the_plan(
    planned_small: Conn,
) -> None:
    # The plan the connection made while the table was small is the one watched: generic, kept.
    async with watched_plans(planned_small, "LEFT JOIN messages", generic=True) as plans:
        outcome = await reservations.reserve(
            planned_small, reservation("k-second", user_id=SECOND), begin=False
        )

    assert outcome is not None and not outcome.replayed
    assert len(plans) == 1
    assert rows_examined(plans[0], "messages") == 0, plans[0]  # no message under this key


async def test_a_batchs_keys_are_looked_up_by_their_index_on_a_table_grown_since_the_plan(
    planned_small: Conn,
) -> None:
    loop = asyncio.get_running_loop()
    items = [
        Reserving(reservation(f"k-batch-{user}", user_id=user), False, loop.create_future())
        for user in (SECOND, WITHOUT_CREDIT)
    ]
    async with watched_plans(planned_small, "WITH ORDINALITY AS k", generic=True) as plans:
        answers = await reserve_many(planned_small, items)

    assert [type(a) for a in answers] == [ReserveOutcome, ConsentRequired]
    assert len(plans) == 1
    assert rows_examined(plans[0], "messages") == 0, plans[0]  # no message under these keys
