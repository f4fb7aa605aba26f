"""A destination's backlog totals (``0011_delivery_counts``) on every backend: kept by triggers
through every change a delivery goes through, they always equal what the deliveries themselves
say (read here through ``delivery_histories``, which walks the rows)."""

from __future__ import annotations

import random
import sqlite3
from datetime import timedelta

import asyncpg

from storage import Store
from storage.models import DeliveryVerdict
from tests.storage.conftest import StoreFactory
from tests.storage.event_log import HOOK, claim, everything, fanned_out, outcome, started
from tests.storage.records import NOW, notification

VERDICTS = (DeliveryVerdict.DELIVERED, DeliveryVerdict.RETRY, DeliveryVerdict.DEAD)


async def walked(store: Store) -> tuple[int, int, int]:
    """(pending, failing, dead) counted from the deliveries, a page at a time."""
    totals = []
    for state in ("pending", "failing", "dead"):
        count, before = 0, None
        while page := await store.delivery_histories(HOOK, state, 50, before):
            count += len(page)
            before = page[-1].delivery.id
        totals.append(count)
    return totals[0], totals[1], totals[2]


async def kept(store: Store) -> tuple[int, int, int]:
    [backlog] = [b for b in await store.destination_backlogs() if b.destination == HOOK]
    return backlog.pending, backlog.failing, backlog.dead


async def test_totals_follow_every_verdict_and_replay(store: Store) -> None:
    rng = random.Random(11)
    await started(store)
    for number in range(60):
        await store.record_notification(notification(f"n-{number}"))
    await fanned_out(store)
    assert await kept(store) == await walked(store) == (60, 0, 0)

    at = NOW
    for _ in range(4):  # rounds of attempts: each claimed delivery gets a random verdict
        at += timedelta(minutes=10)
        claimed = await claim(store, at=at)
        results = [
            outcome(item, rng.choice(VERDICTS), at=at, error="boom", retry_at=at)
            for item in claimed
        ]
        await store.finish_deliveries("worker-a", results)
        assert await kept(store) == await walked(store)

    dead = await store.delivery_histories(HOOK, "dead", 100)
    assert dead, "the random verdicts left none dead"
    assert await store.replay_delivery(HOOK, dead[0].delivery.event_id, at)
    assert await kept(store) == await walked(store)
    await store.replay_since(HOOK, NOW - timedelta(days=1), everything, at)
    assert await kept(store) == await walked(store)
    assert (await kept(store))[2] == 0  # every dead one replayed


async def test_a_lease_changes_no_total(store: Store) -> None:
    await started(store)
    await store.record_notification(notification("n-1"))
    await fanned_out(store)
    before = await kept(store)

    await claim(store)

    assert await kept(store) == before == (1, 0, 0)


UNDO_0011 = (
    "DROP TABLE delivery_counts",
    "DROP INDEX deliveries_pending_age",
    "DROP INDEX deliveries_failed",
    "DROP INDEX deliveries_by_state",
    "DELETE FROM schema_migrations WHERE version IN (11, 12)",  # later ones stay applied
)
POSTGRES_TRIGGERS = ("delivery_counted", "delivery_recounted")


async def as_before_0011(backend: str, store_url: str) -> None:
    """The database as 0010 left it (its deliveries kept), so that 0011 runs on them (and on
    SQLite 0012 after it, which drops 0011's triggers again)."""
    if backend == "sqlite":
        connection = sqlite3.connect(store_url.removeprefix("sqlite:///"), isolation_level=None)
        for statement in UNDO_0011:
            connection.execute(statement)
        connection.close()
        return
    pg = await asyncpg.connect(store_url)
    try:
        for trigger in POSTGRES_TRIGGERS:
            await pg.execute(f"DROP TRIGGER {trigger} ON deliveries")
        for statement in UNDO_0011:
            await pg.execute(statement)
        await pg.execute("DROP FUNCTION subgate_delivery_counts, subgate_delivery_states")
    finally:
        await pg.close()


async def test_deliveries_from_before_0011_are_counted(
    backend: str, store_url: str, store_factory: StoreFactory
) -> None:
    store = await store_factory()
    await started(store)
    for number in range(5):
        await store.record_notification(notification(f"n-{number}"))
    await fanned_out(store)
    claimed = await claim(store)
    verdicts = [DeliveryVerdict.RETRY, DeliveryVerdict.DEAD, DeliveryVerdict.DELIVERED]
    results = [
        outcome(c, v, at=NOW, retry_at=NOW) for c, v in zip(claimed[:3], verdicts, strict=True)
    ]
    await store.finish_deliveries("worker-a", results)
    await store.close()

    await as_before_0011(backend, store_url)
    store = await store_factory()  # applies 0011 again, counting what is there

    assert await kept(store) == await walked(store) == (3, 1, 1)
