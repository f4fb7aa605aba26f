"""A send's reservation on PostgreSQL finds a replay through the message's key, whatever the
table held when its plan was made.

A connection keeps the plan it made for a statement. Made while ``messages`` was small (a new
schema: every index led by ``app_id`` then looks as cheap as every other), the reservation's
read could look its idempotency key up through one led by ``app_id`` alone and read every
message of the app at each reservation from then on. This makes the read's plan on a small
table, adds 20,000 messages of the app, and watches the same connection's next read through
``auto_explain`` (its plans sent to this connection as notices).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from storage import open_store
from storage.postgres import reservations
from storage.postgres.connection import Conn
from storage.timecodec import to_millis
from tests.storage.records import APP, NOW, accept, reservation

OTHER_MESSAGES = 20_000
# Reading one message by its key costs a few index and heap pages; reading the app's messages
# through another index costs hundreds.
FEW_PAGES = 30
SECOND = "2088000000000002"
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
    """One connection whose reservation read was planned while ``messages`` was small, as a new
    schema's is in its first seconds (analysed empty, a few pages written since), the table
    holding 20,000 more messages of the app since."""
    store = await open_store(postgres_url)
    await store.append_consent_events([accept(0), accept(0, user_id=SECOND)], NOW)
    await store.close()
    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=1)
    connection = await pool.acquire()
    await connection.execute("ANALYZE; SET plan_cache_mode = force_generic_plan")
    await add_messages(connection, "early-", SMALL)
    assert await reservations.reserve(connection, reservation("k-first"), begin=False)
    await add_messages(connection, "other-", OTHER_MESSAGES)
    yield connection
    await pool.release(connection)
    await pool.close()


def messages_pages_read(plan: str) -> int:
    """Pages the plan's read of ``messages`` touched (the scan node and what it holds)."""
    found = re.search(r" on messages m .*\n(?:.*\n)*?\s*Buffers: shared((?: \w+=\d+)+)", plan)
    assert found, plan
    return sum(int(count) for count in re.findall(r"=(\d+)", found.group(1)))


async def test_the_key_is_looked_up_by_its_index_on_a_table_grown_since_the_plan(
    planned_small: Conn,
) -> None:
    plans: list[str] = []

    def heard(_: object, message: asyncpg.PostgresLogMessage) -> None:
        if "LEFT JOIN messages" in message.message:
            plans.append(message.message)

    planned_small.add_log_listener(heard)
    await planned_small.execute(
        "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
        "SET auto_explain.log_level = notice; SET auto_explain.log_analyze = on; "
        "SET auto_explain.log_buffers = on"
    )
    outcome = await reservations.reserve(
        planned_small, reservation("k-second", user_id=SECOND), begin=False
    )
    planned_small.remove_log_listener(heard)

    assert outcome is not None and not outcome.replayed
    assert len(plans) == 1
    assert messages_pages_read(plans[0]) < FEW_PAGES, plans[0]
