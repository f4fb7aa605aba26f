"""Helpers of the event-log tests: reading a whole log once it is settled, fanning out,
claiming and reporting attempts."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from storage import Store
from storage.base import EventFilter
from storage.models import (
    START,
    ClaimedDelivery,
    DeliveryAttempt,
    DeliveryResult,
    DeliveryVerdict,
    EventHead,
    EventType,
    StoredEvent,
)
from storage.postgres import PostgresStore
from tests.storage.records import APP, NOW

ALL_TYPES = [event_type.value for event_type in EventType]
_WAIT_SECONDS = 30.0


async def settled(store: Store) -> None:
    """Return once every event committed so far is settled.

    SQLite's are at their commit. PostgreSQL's wait for every transaction that was running to
    end: a test's own have committed, but another suite on the same server may hold one open
    (the settled point is the whole server's oldest running transaction), and the tests that
    read the log must not depend on what else runs there.
    """
    if not isinstance(store, PostgresStore):
        return
    async with store.pool.acquire() as connection:
        horizon = await connection.fetchval(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
        )
        for _ in range(int(_WAIT_SECONDS / 0.01)):
            oldest = await connection.fetchval(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
            )
            if oldest >= horizon:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"a transaction older than {horizon} ran for {_WAIT_SECONDS} s")


async def log(store: Store, app_id: str = APP) -> list[StoredEvent]:
    """The app's whole log, once settled."""
    await settled(store)
    return await store.events_after(app_id, START, 10_000, ALL_TYPES)


def everything(head: EventHead) -> bool:
    """A destination's filter that takes every event."""
    return True


HOOK = "hook"  # the destination most tests deliver to
LEASE = timedelta(minutes=1)


async def started(store: Store, destination: str = HOOK, now: datetime = NOW) -> None:
    """Make ``destination`` known: its cursor at the end of the log so far."""
    await settled(store)
    assert await store.fan_out(destination, everything, now, 100) == 0


async def fanned_out(
    store: Store,
    destination: str = HOOK,
    wants: EventFilter = everything,
    limit: int = 100,
    now: datetime = NOW,
) -> int:
    """One fan-out of the settled log; how many events it read."""
    await settled(store)
    return await store.fan_out(destination, wants, now, limit)


async def claim(
    store: Store, owner: str = "worker-a", at: datetime = NOW, limit: int = 100
) -> list[ClaimedDelivery]:
    """A claim of the hook's due deliveries, leased for ``LEASE``."""
    return await store.claim_deliveries(HOOK, owner, at, at + LEASE, limit)


def outcome(
    claimed: ClaimedDelivery,
    verdict: DeliveryVerdict,
    status_code: int | None = 200,
    *,
    at: datetime = NOW,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> DeliveryResult:
    """An attempt at ``at`` (250 ms long) and its verdict."""
    attempt = DeliveryAttempt(attempted_at=at, status_code=status_code, latency_ms=250, error=error)
    return DeliveryResult(
        delivery_id=claimed.delivery.id, attempt=attempt, verdict=verdict, next_attempt_at=retry_at
    )


def claimed_keys(claimed: list[ClaimedDelivery]) -> list[str]:
    """The dedupe key of each claimed delivery's notification ("-" for other events)."""
    return [c.event.notification.dedupe_key if c.event.notification else "-" for c in claimed]
