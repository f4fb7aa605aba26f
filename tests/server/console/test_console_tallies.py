"""The overview's counts per minute and per hour (``server.console.tallies``), on both stores:
the same buckets the store counts, a settled bucket counted once and never read again (a row
stored into it afterwards is not seen; a fresh tally sees it), the live buckets read on every
load, and buckets older than the chart dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from server.console.tallies import NotificationTallies
from storage import Store, open_store
from storage.models import TimeBucket
from tests.storage.records import APP, NOW, notification

HOUR_START = NOW  # 08:00:00, a bucket's start for both widths


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


async def arrive(store: Store, key: str, at: datetime) -> None:
    await store.record_notification(notification(key).model_copy(update={"received_at": at}))


def minute(n: int, count: int) -> TimeBucket:
    return TimeBucket(start=HOUR_START + timedelta(minutes=n), count=count)


async def test_settled_minutes_are_counted_once_and_live_ones_every_time(store: Store) -> None:
    tallies = NotificationTallies()
    for index, at in enumerate((0, 0, 1, 5)):
        await arrive(store, f"n-{index}", HOUR_START + timedelta(minutes=at, seconds=10))
    now = HOUR_START + timedelta(minutes=5, seconds=30)  # minutes 0-3 settled, 4-5 live

    first = await tallies.buckets(store, APP, HOUR_START, 60, now)
    counted = await store.notification_buckets(APP, HOUR_START, 60)
    await arrive(store, "late", HOUR_START + timedelta(minutes=1, seconds=20))  # settled
    await arrive(store, "live", HOUR_START + timedelta(minutes=5, seconds=40))
    second = await tallies.buckets(store, APP, HOUR_START, 60, now + timedelta(seconds=15))
    fresh = await NotificationTallies().buckets(store, APP, HOUR_START, 60, now)

    assert first == counted == [minute(0, 2), minute(1, 1), minute(5, 1)]
    assert second == [minute(0, 2), minute(1, 1), minute(5, 2)]  # the late row is not read
    assert fresh == [minute(0, 2), minute(1, 2), minute(5, 2)]


async def test_a_later_chart_drops_old_buckets_and_counts_the_new_ones(store: Store) -> None:
    tallies = NotificationTallies()
    hours = [HOUR_START + timedelta(hours=n) for n in range(4)]
    for index, at in enumerate((0, 50)):
        await arrive(store, f"n-{index}", HOUR_START + timedelta(minutes=at))

    early = await tallies.buckets(store, APP, hours[0], 3600, hours[1] + timedelta(minutes=30))
    for index, at in enumerate((130, 200)):
        await arrive(store, f"m-{index}", HOUR_START + timedelta(minutes=at))
    later = await tallies.buckets(store, APP, hours[1], 3600, hours[3] + timedelta(minutes=30))

    assert early == [TimeBucket(start=hours[0], count=2)]
    assert later == [TimeBucket(start=hours[2], count=1), TimeBucket(start=hours[3], count=1)]
    assert later == await store.notification_buckets(APP, hours[1], 3600)
    assert await tallies.buckets(store, "2021000000000002", hours[0], 3600, hours[3]) == []
