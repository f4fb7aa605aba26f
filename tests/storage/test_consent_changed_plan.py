"""The ``consent.changed`` trigger on PostgreSQL reads the log entry that changed a key by its
primary key, whatever the statistics say.

It used to look the entry up as the key's newest, a plan chosen from statistics: with the log
analysed while it held one user and grown since, that plan read every entry of the app for each
change. This builds exactly that log and watches the trigger's own statement through
``auto_explain`` (its plans sent to this connection as notices), on both writers that save a
key's state: the append of events and a send's reservation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from storage import open_store
from storage.postgres import consents, reservations
from storage.postgres.connection import Conn
from storage.timecodec import to_millis
from tests.storage.records import APP, NOW, USER, accept, reservation

OTHER_ENTRIES = 20_000
# Reading one entry costs a few index and heap pages; reading the app's entries through another
# index costs hundreds.
FEW_PAGES = 30


@pytest.fixture
async def grown_log(postgres_url: str) -> AsyncIterator[Conn]:
    """A log analysed while it held one user's entry, then grown by other users' entries."""
    store = await open_store(postgres_url)
    await store.append_consent_events([accept(0)], NOW)
    await store.close()
    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=1)
    connection = await pool.acquire()
    await connection.execute("ANALYZE consent_events")
    await connection.execute(
        "INSERT INTO consent_events (app_id, user_id, channel, template_id, action, "
        "occurred_at, recorded_at, source, evidence) "
        "SELECT $1, 'u' || n, 'mini_template', 'T-one-time', 'accept', $2, $2, "
        "'client_report', 'report:' || n FROM generate_series(1, $3) AS n",
        APP,
        to_millis(NOW),
        OTHER_ENTRIES,
    )
    yield connection
    await pool.release(connection)
    await pool.close()


@asynccontextmanager
async def trigger_plans(connection: Conn) -> AsyncIterator[list[str]]:
    """Collects the plan of every statement the trigger runs on ``connection`` meanwhile."""
    plans: list[str] = []

    def heard(_: object, message: asyncpg.PostgresLogMessage) -> None:
        if "'consent.changed'" in message.message:
            plans.append(message.message)

    connection.add_log_listener(heard)
    await connection.execute(
        "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
        "SET auto_explain.log_level = notice; SET auto_explain.log_nested_statements = on; "
        "SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; "
        "SET plan_cache_mode = force_generic_plan"
    )
    try:
        yield plans
    finally:
        connection.remove_log_listener(heard)


def log_pages_read(plan: str) -> int:
    """Pages the plan's read of ``consent_events`` touched (the scan node and what it holds)."""
    found = re.search(r" on consent_events .*\n(?:.*\n)*?\s*Buffers: shared((?: \w+=\d+)+)", plan)
    assert found, plan
    return sum(int(count) for count in re.findall(r"=(\d+)", found.group(1)))


async def changed_events(connection: Conn) -> list[tuple[str, str]]:
    rows = await connection.fetch(
        "SELECT user_id, data FROM events WHERE type = 'consent.changed' ORDER BY id"
    )
    return [(row["user_id"], row["data"]) for row in rows]


async def test_an_appended_event_is_announced_from_its_own_entry(grown_log: Conn) -> None:
    async with trigger_plans(grown_log) as plans, grown_log.transaction():
        await consents.append_events(grown_log, [accept(1)], to_millis(NOW))
    newest = await grown_log.fetchval("SELECT max(id) FROM consent_events WHERE user_id = $1", USER)

    assert len(plans) == 1
    assert log_pages_read(plans[0]) < FEW_PAGES, plans[0]
    user, data = (await changed_events(grown_log))[-1]
    assert user == USER
    assert f'"sequence" : {newest}' in data and '"credits" : 2' in data


async def test_a_reservations_spend_is_announced_from_its_own_entry(
    grown_log: Conn,
) -> None:
    async with trigger_plans(grown_log) as plans, grown_log.transaction():
        outcome = await reservations.reserve(grown_log, reservation(), begin=False)
    assert outcome is not None and not outcome.replayed
    spend = await grown_log.fetchval(
        "SELECT id FROM consent_events WHERE user_id = $1 AND action = 'spend'", USER
    )

    assert len(plans) == 1
    assert log_pages_read(plans[0]) < FEW_PAGES, plans[0]
    user, data = (await changed_events(grown_log))[-1]
    assert user == USER
    assert f'"sequence" : {spend}' in data and '"credits" : 0' in data
