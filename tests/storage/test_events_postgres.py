"""The event log on PostgreSQL, where ids are handed out before commit: a reader takes only
settled events, and several processes share one fan-out cursor and one set of deliveries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeAlias

import asyncpg
import pytest

from storage import Store, open_store
from storage.models import START, StoredEvent
from storage.sql.dialect import POSTGRES
from storage.sql.notification_rows import notification_row
from storage.sql.statements import statements_for
from tests.storage.event_log import (
    ALL_TYPES,
    HOOK,
    LEASE,
    claim,
    everything,
    fanned_out,
    settled,
    started,
)
from tests.storage.postgres_env import connect_admin
from tests.storage.records import APP, NOW, notification

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one schema, each with its own pool: two Subgate processes."""
    first, second = await open_store(postgres_url), await open_store(postgres_url)
    yield first, second
    await first.close()
    await second.close()


@pytest.fixture
async def raw(postgres_url: str) -> AsyncIterator[Connection]:
    """A plain connection to the same schema, outside any store."""
    connection = await connect_admin(postgres_url)
    yield connection
    await connection.close()


def keys(events: list[StoredEvent]) -> list[str]:
    return [e.notification.dedupe_key if e.notification else "-" for e in events]


async def test_an_event_still_uncommitted_holds_back_every_later_one(
    stores: tuple[Store, Store], raw: Connection
) -> None:
    store, _ = stores
    await started(store)
    await store.record_notification(notification("before"))
    assert await fanned_out(store) == 1
    before = await store.last_event_position()
    insert = statements_for(POSTGRES).notifications.insert_notification

    transaction = raw.transaction()
    await transaction.start()
    await raw.fetchval(insert, *notification_row(notification("open")))
    await store.record_notification(notification("after"))  # committed, behind "open"
    assert keys(await store.events_after(APP, START, 10, ALL_TYPES)) == ["before"]
    assert await store.last_event_position() == before
    assert await store.fan_out(HOOK, everything, NOW, 10) == 0
    await transaction.commit()

    await settled(store)
    assert keys(await store.events_after(APP, before, 10, ALL_TYPES)) == ["open", "after"]
    assert await store.last_event_position() > before
    assert await store.fan_out(HOOK, everything, NOW, 10) == 2
    assert [
        c.event.notification.dedupe_key for c in await claim(store) if c.event.notification
    ] == [
        "before",
        "open",
        "after",
    ]


async def test_a_fan_out_reads_nothing_while_another_process_holds_the_cursor(
    stores: tuple[Store, Store], raw: Connection
) -> None:
    store, _ = stores
    await started(store)
    await store.record_notification(notification("n-1"))
    await settled(store)

    async with raw.transaction():
        await raw.execute(
            "SELECT 1 FROM destination_cursors WHERE destination = $1 FOR UPDATE", HOOK
        )
        assert await store.fan_out(HOOK, everything, NOW, 10) == 0

    assert await fanned_out(store) == 1


async def test_two_processes_fanning_out_at_once_read_each_event_once(
    stores: tuple[Store, Store], raw: Connection
) -> None:
    first, second = stores
    await started(first)
    await asyncio.gather(*(first.record_notification(notification(f"n-{i}")) for i in range(40)))
    await settled(first)

    counts = await asyncio.gather(
        *(store.fan_out(HOOK, everything, NOW, 7) for store in stores for _ in range(4))
    )
    while more := await second.fan_out(HOOK, everything, NOW, 7):
        counts.append(more)

    assert sum(counts) == 40
    assert await raw.fetchval("SELECT count(DISTINCT event_id) FROM deliveries") == 40
    assert await raw.fetchval("SELECT count(*) FROM deliveries") == 40


async def test_two_processes_claiming_at_once_never_share_a_delivery(
    stores: tuple[Store, Store],
) -> None:
    first, second = stores
    await started(first)
    for i in range(30):
        await first.record_notification(notification(f"n-{i}"))
    await fanned_out(first)

    claims = await asyncio.gather(
        *(
            store.claim_deliveries(HOOK, f"worker-{i}-{n}", NOW, NOW + LEASE, 5)
            for i, store in enumerate(stores)
            for n in range(4)
        )
    )
    rest = await claim(second, "worker-last", limit=100)

    ids = [c.delivery.id for claimed in [*claims, rest] for c in claimed]
    assert len(ids) == len(set(ids)) == 30
    assert await claim(first, "worker-after", NOW + LEASE) == []
