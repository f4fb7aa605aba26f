"""The fan-out and the claims every Store backend must have: each wanted event becomes one
delivery per destination, claimed by one worker at a time, a user's events in their order."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from storage import Store
from storage.models import (
    DeliveryStatus,
    DeliveryVerdict,
    EventHead,
    EventType,
)
from tests.storage.conftest import StoreFactory
from tests.storage.event_log import (
    HOOK,
    LEASE,
    claim,
    claimed_keys,
    fanned_out,
    log,
    outcome,
    started,
)
from tests.storage.records import APP, NOW, accept, notification

OTHER_APP = "2021000000000002"


async def test_a_new_destination_starts_at_the_end_of_the_log(store: Store) -> None:
    await store.record_notification(notification("before"))
    await started(store)
    await store.record_notification(notification("n-1"))
    await store.record_notification(notification("n-2"))

    assert await fanned_out(store) == 2
    assert await fanned_out(store) == 0

    claimed = await claim(store)
    assert claimed_keys(claimed) == ["n-1", "n-2"]
    [first, _] = claimed
    assert first.event == (await log(store))[1]
    delivery = first.delivery
    assert (delivery.destination, delivery.event_id, delivery.app_id, delivery.user_id) == (
        HOOK,
        first.event.id,
        APP,
        None,
    )
    assert (delivery.status, delivery.attempts, delivery.delivered_at) == (
        DeliveryStatus.PENDING,
        0,
        None,
    )
    times = (delivery.next_attempt_at, delivery.retry_since, delivery.created_at)
    assert times == (NOW, NOW, NOW) and delivery.updated_at == NOW


async def test_a_destination_gets_only_what_it_wants_and_reads_past_the_rest(
    store: Store,
) -> None:
    await started(store)
    await store.record_notification(notification("n-1"))
    await store.append_consent_events([accept(1)], NOW)
    await store.record_notification(notification("n-other", app_id=OTHER_APP))
    heads: list[EventHead] = []

    def wants(head: EventHead) -> bool:
        heads.append(head)
        return head.type == EventType.NOTIFICATION_RECEIVED and head.app_id == APP

    assert await fanned_out(store, wants=wants) == 3

    assert heads == [
        EventHead("notification.received", APP, "trade_status_sync"),
        EventHead("consent.changed", APP, None),
        EventHead("notification.received", OTHER_APP, "trade_status_sync"),
    ]
    assert claimed_keys(await claim(store)) == ["n-1"]
    assert await fanned_out(store) == 0


async def test_the_cursor_moves_a_limit_at_a_time_and_survives_a_reopen(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory()
    await started(store)
    for i in range(5):
        await store.record_notification(notification(f"n-{i}"))

    assert [await fanned_out(store, limit=2) for _ in range(2)] == [2, 2]
    await store.close()
    reopened = await store_factory()

    assert [await fanned_out(reopened, limit=2) for _ in range(2)] == [1, 0]
    assert claimed_keys(await claim(reopened)) == [f"n-{i}" for i in range(5)]


async def test_fan_outs_at_once_read_each_event_once(store: Store) -> None:
    await started(store)
    await asyncio.gather(*(store.record_notification(notification(f"n-{i}")) for i in range(20)))

    counts = await asyncio.gather(*(fanned_out(store, limit=7) for _ in range(6)))
    counts += [await fanned_out(store, limit=7) for _ in range(4)]

    assert sum(counts) == 20
    assert sorted(claimed_keys(await claim(store))) == sorted(f"n-{i}" for i in range(20))


async def test_a_users_next_event_waits_until_the_one_before_is_settled(store: Store) -> None:
    await started(store)
    await store.append_consent_events([accept(1, user_id="2088A")], NOW)
    await store.append_consent_events([accept(2, user_id="2088A")], NOW)
    await store.append_consent_events([accept(3, user_id="2088B")], NOW)
    await store.record_notification(notification("n-1"))
    await fanned_out(store)

    first = await claim(store)
    assert [c.event.user_id for c in first] == ["2088A", "2088B", None]
    a1, b1, n1 = first
    assert await claim(store, "worker-b") == []  # leased, or waiting behind A's first
    soon, later = NOW + timedelta(minutes=5), NOW + timedelta(minutes=10)
    retry = outcome(a1, DeliveryVerdict.RETRY, 503, retry_at=later)
    await store.finish_deliveries("worker-a", [retry, outcome(b1, DeliveryVerdict.DELIVERED)])
    await store.finish_deliveries("worker-a", [outcome(n1, DeliveryVerdict.DELIVERED)])
    assert await claim(store, "worker-b", soon) == []  # A's first is still pending
    [again] = await claim(store, "worker-b", later)
    assert again.delivery.id == a1.delivery.id
    assert await store.finish_deliveries("worker-b", [outcome(again, DeliveryVerdict.DEAD)]) == 1
    [a2] = await claim(store, "worker-b", later)
    assert (a2.event.user_id, a2.event.data and a2.event.data["credits"]) == ("2088A", 2)


async def test_a_live_lease_is_never_claimed_and_an_expired_one_is(store: Store) -> None:
    await started(store)
    await store.record_notification(notification("n-1"))
    await fanned_out(store)

    [held] = await claim(store, "worker-a", NOW)

    assert await claim(store, "worker-b", NOW + LEASE) == []
    [taken] = await claim(store, "worker-b", NOW + LEASE + timedelta(milliseconds=1))
    assert taken.delivery.id == held.delivery.id
    assert await claim(store, "worker-a", NOW + LEASE + timedelta(seconds=1)) == []


async def test_two_owners_claim_disjoint_sets_oldest_event_first(store: Store) -> None:
    await started(store)
    for i in range(6):
        await store.record_notification(notification(f"n-{i}"))
    await fanned_out(store)

    first, second = await asyncio.gather(
        claim(store, "worker-a", limit=4), claim(store, "worker-b", limit=4)
    )

    assert {c.delivery.id for c in first}.isdisjoint({c.delivery.id for c in second})
    assert sorted(claimed_keys(first + second)) == [f"n-{i}" for i in range(6)]
    for claimed in (first, second):
        assert [c.event.position for c in claimed] == sorted(c.event.position for c in claimed)
    assert await claim(store, "worker-c") == []
