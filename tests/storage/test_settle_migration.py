"""Migration 0007 on a database written under 0001-0006, SQLite and PostgreSQL: a message left
``unknown`` before the upgrade reads back unsettled, and is settled after it, its event carrying
the settlement."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import asyncpg

from storage.migrations import migrations_for
from storage.models import START, MessageStatus, Settlement, SettleOutcome
from tests.storage.conftest import StoreFactory
from tests.storage.event_log import settled
from tests.storage.records import APP, NOW, USER

MESSAGE_ID = "msg_000000000000000000000001"


_SEND = (
    "INSERT INTO messages (id, app_id, idempotency_key, request_sha256, channel, user_id,"
    " template_id, payload, status, attempts, next_attempt_at, created_at, updated_at,"
    " recipients, ledger_channel) VALUES ('{id}', '{app}', 'k-old', 'x', 'mini_template',"
    " '{user}', 'T', '{{}}', 'sending', 1, {at}, {at}, {at}, '[\"{user}\"]', 'mini_template')"
)
_RECORD = "INSERT INTO schema_migrations VALUES ({version}, '{name}', 0)"
_UNKNOWN = "UPDATE messages SET status = 'unknown' WHERE id = '{id}'"
_VERSIONS = "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "


def old_statements(backend: str) -> list[str]:
    """The schema of 0001-0006, then a message that ended ``unknown`` under it."""
    at = int(NOW.timestamp() * 1000)
    kind = "INTEGER" if backend == "sqlite" else "BIGINT"
    statements = [f"{_VERSIONS}applied_at {kind} NOT NULL)"]
    for migration in migrations_for(backend)[:6]:
        statements.append(migration.sql)
        statements.append(_RECORD.format(version=migration.version, name=migration.name))
    row = {"id": MESSAGE_ID, "app": APP, "user": USER, "at": at}
    return [*statements, _SEND.format(**row), _UNKNOWN.format(**row)]


async def write_old_database(backend: str, store_url: str) -> None:
    if backend == "sqlite":
        connection = sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None)
        for statement in old_statements(backend):
            connection.executescript(statement)
        connection.close()
        return
    pg = await asyncpg.connect(store_url)
    try:
        for statement in old_statements(backend):
            await pg.execute(statement)
    finally:
        await pg.close()


async def test_a_message_left_unknown_before_0007_is_settled_after_it(
    backend: str, store_url: str, store_factory: StoreFactory
) -> None:
    await write_old_database(backend, store_url)
    store = await store_factory()  # applies 0007
    try:
        before = await store.get_message(APP, MESSAGE_ID)
        settlement = Settlement(
            outcome=SettleOutcome.DELIVERED,
            reason="the user has it",
            settled_by="token:1a2b3c4d",
            settled_at=NOW + timedelta(days=1),
        )
        after = await store.settle_message(APP, MESSAGE_ID, settlement)
        await settled(store)
        events = await store.events_after(APP, START, 10, ["message.updated"])
    finally:
        await store.close()

    assert before is not None
    assert (before.status, before.settlement) == (MessageStatus.UNKNOWN, None)
    assert after is not None
    assert (after.status, after.settlement) == (MessageStatus.SETTLED_DELIVERED, settlement)
    assert [(e.data or {}).get("status") for e in events] == ["unknown", "settled_delivered"]
    assert "settlement" not in (events[0].data or {})
    assert (events[1].data or {})["settlement"] == {
        "reason": "the user has it",
        "settled_by": "token:1a2b3c4d",
    }
