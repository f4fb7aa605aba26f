"""The ``consent.changed`` trigger on PostgreSQL reads the log entry that changed a key by its
primary key, whatever the statistics say.

It used to look the entry up as the key's newest, a plan chosen from statistics: with the log
analysed while it held one user and grown since, that plan read every entry of the app for each
change. This builds exactly that log and watches the trigger's own statement through
``auto_explain`` (its plans sent to this connection as notices), on both writers that save a
key's state: the append of events and a send's reservation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage.postgres import consents, reservations
from storage.postgres.connection import Conn
from storage.sql.ledger import EVENT_COLUMNS
from storage.timecodec import to_millis
from tests.storage.pg_plans import ledger_grown_past_its_statistics, rows_examined, watched_plans
from tests.storage.records import NOW, USER, accept, reservation

TRIGGER = "'consent.changed'"  # in the text of the trigger's statement, and of no other


@pytest.fixture
async def grown_log(postgres_url: str) -> AsyncIterator[Conn]:
    columns = [*EVENT_COLUMNS.split(", "), "recorded_at"]
    async with ledger_grown_past_its_statistics(postgres_url, "consent_events", columns) as log:
        yield log


async def changed_events(connection: Conn) -> list[tuple[str, str]]:
    rows = await connection.fetch(
        "SELECT user_id, data FROM events WHERE type = 'consent.changed' ORDER BY id"
    )
    return [(row["user_id"], row["data"]) for row in rows]


async def test_an_appended_event_is_announced_from_its_own_entry(grown_log: Conn) -> None:
    async with watched_plans(grown_log, TRIGGER, generic=True) as plans, grown_log.transaction():
        await consents.append_events(grown_log, [accept(1)], to_millis(NOW))
    newest = await grown_log.fetchval("SELECT max(id) FROM consent_events WHERE user_id = $1", USER)

    assert len(plans) == 1
    assert rows_examined(plans[0], "consent_events") == 1, plans[0]
    user, data = (await changed_events(grown_log))[-1]
    assert user == USER
    assert f'"sequence" : {newest}' in data and '"credits" : 2' in data


async def test_a_reservations_spend_is_announced_from_its_own_entry(
    grown_log: Conn,
) -> None:
    async with watched_plans(grown_log, TRIGGER, generic=True) as plans, grown_log.transaction():
        outcome = await reservations.reserve(grown_log, reservation(), begin=False)
    assert outcome is not None and not outcome.replayed
    spend = await grown_log.fetchval(
        "SELECT id FROM consent_events WHERE user_id = $1 AND action = 'spend'", USER
    )

    assert len(plans) == 1
    assert rows_examined(plans[0], "consent_events") == 1, plans[0]
    user, data = (await changed_events(grown_log))[-1]
    assert user == USER
    assert f'"sequence" : {spend}' in data and '"credits" : 0' in data
