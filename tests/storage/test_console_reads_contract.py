"""The operator console's reads on every backend: pages newest first by keyset with each
filter, bucketed counts for the charts (refusals too), a user's messages, and what one
notification caused (its consent events and its deliveries)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from storage import Store
from storage.models import (
    MessageQuery,
    NotificationQuery,
    NotificationRecord,
    StoredNotification,
    TimeBucket,
)
from storage.timecodec import to_millis
from tests.storage.event_log import HOOK, fanned_out, started
from tests.storage.records import APP, NOW, USER, accept, follow, notification, reservation

OTHER_APP = "2021000000000002"


def arriving(
    key: str, minute: int, kind: str = "trade_status_sync", app: str = APP
) -> NotificationRecord:
    """A notification received ``minute`` minutes after NOW."""
    at = NOW + timedelta(minutes=minute)
    return notification(key, app).model_copy(update={"received_at": at, "kind": kind})


def keys(page: list[StoredNotification]) -> list[str]:
    return [n.dedupe_key for n in page]


async def test_notifications_are_paged_newest_first_by_keyset(store: Store) -> None:
    for index in range(5):
        await store.record_notification(arriving(f"n-{index}", index // 2))
    await store.record_notification(arriving("foreign", 9, app=OTHER_APP))

    first = await store.notifications_page(APP, NotificationQuery(limit=2))
    last = first[-1]
    second = await store.notifications_page(
        APP, NotificationQuery(limit=2, before=(to_millis(last.received_at), last.id))
    )
    last = second[-1]
    third = await store.notifications_page(
        APP, NotificationQuery(limit=2, before=(to_millis(last.received_at), last.id))
    )

    assert keys(first) == ["n-4", "n-3"]
    assert keys(second) == ["n-2", "n-1"]  # n-2 and n-3 share a minute: the id breaks the tie
    assert keys(third) == ["n-0"]


async def test_notifications_are_filtered_by_kind_time_and_notify_id_text(store: Store) -> None:
    await store.record_notification(arriving("2026abc_1", 0))
    await store.record_notification(arriving("2026abd_2", 1, kind="life_account_follow"))
    await store.record_notification(arriving("2026abc_3", 2))
    await store.record_notification(arriving("100%_4", 3))

    def query(**filters: object) -> NotificationQuery:
        return NotificationQuery(limit=10, **filters)  # type: ignore[arg-type]

    assert keys(await store.notifications_page(APP, query(kind="life_account_follow"))) == [
        "2026abd_2"
    ]
    assert keys(await store.notifications_page(APP, query(notify_id_text="abc"))) == [
        "2026abc_3",
        "2026abc_1",
    ]
    # LIKE's wildcards in the text are taken as they are.
    assert keys(await store.notifications_page(APP, query(notify_id_text="%_"))) == ["100%_4"]
    minute = 60_000
    window = query(since=to_millis(NOW) + minute, until=to_millis(NOW) + 2 * minute)
    assert keys(await store.notifications_page(APP, window)) == ["2026abc_3", "2026abd_2"]


async def test_a_text_search_reads_down_to_the_scan_end_and_goes_on_from_it(
    store: Store,
) -> None:
    for index in range(6):
        kind = "life_account_follow" if index % 2 else "trade_status_sync"
        await store.record_notification(
            arriving(f"n-{index}-{'hit' if index in (1, 4) else 'x'}", index, kind)
        )

    text = NotificationQuery(limit=10, notify_id_text="hit")
    end = await store.notifications_scan_end(APP, text, 3)  # n-5, n-4, n-3
    first = await store.notifications_page(APP, replace(text, down_to=end))
    assert end is not None
    rest = replace(text, before=end)
    end_of_rest = await store.notifications_scan_end(APP, rest, 3)  # n-2, n-1, n-0
    follows = NotificationQuery(limit=10, kind="life_account_follow")

    assert keys(first) == ["n-4-hit"]
    assert keys(await store.notifications_page(APP, replace(rest, down_to=end_of_rest))) == [
        "n-1-hit"
    ]
    assert end_of_rest is not None and end_of_rest[0] == to_millis(NOW)  # n-0, the oldest
    assert await store.notifications_scan_end(APP, rest, 4) is None  # fewer than 4 left
    # The kind is part of the range: n-5, n-3, n-1 are the follows.
    follows_end = await store.notifications_scan_end(APP, follows, 2)
    assert follows_end is not None and follows_end[0] == to_millis(NOW) + 3 * 60_000
    assert keys(await store.notifications_page(APP, replace(follows, down_to=follows_end))) == [
        "n-5-x",
        "n-3-x",
    ]


async def test_notifications_are_counted_per_bucket(store: Store) -> None:
    for index, minute in enumerate((0, 0, 1, 3, 61)):
        await store.record_notification(arriving(f"n-{index}", minute))

    minutes = await store.notification_buckets(APP, NOW + timedelta(minutes=1), 60)
    hours = await store.notification_buckets(APP, NOW, 3600)

    assert minutes == [
        TimeBucket(start=NOW + timedelta(minutes=1), count=1),
        TimeBucket(start=NOW + timedelta(minutes=3), count=1),
        TimeBucket(start=NOW + timedelta(minutes=61), count=1),
    ]
    assert hours == [
        TimeBucket(start=NOW, count=4),
        TimeBucket(start=NOW + timedelta(hours=1), count=1),
    ]
    assert await store.notification_buckets(OTHER_APP, NOW, 60) == []


async def test_refusals_are_counted_per_minute_of_their_flush(store: Store) -> None:
    await store.add_refusals({(APP, "bad_sign"): 2, (APP, "stale"): 1}, NOW)
    await store.add_refusals({(APP, "bad_sign"): 3, (OTHER_APP, "bad_sign"): 7}, NOW)
    await store.add_refusals({(APP, "bad_sign"): 4}, NOW + timedelta(minutes=2, seconds=5))

    minutes = await store.refusal_buckets(APP, NOW, 60)
    hours = await store.refusal_buckets(APP, NOW - timedelta(minutes=30), 3600)

    assert minutes == [
        TimeBucket(start=NOW, count=6),
        TimeBucket(start=NOW + timedelta(minutes=2), count=4),
    ]
    assert hours == [TimeBucket(start=NOW, count=10)]
    assert [c.count for c in await store.refusal_counts() if c.app_id == APP] == [9, 1]


async def test_messages_are_paged_and_filtered_by_status_and_channel(store: Store) -> None:
    for index in range(4):
        await store.append_consent_events([accept(index)], NOW)
    made = []
    for index in range(4):
        created = NOW + timedelta(hours=1, minutes=index // 2)
        outcome = await store.reserve_send(reservation(f"k-{index}", created_at=created))
        made.append(outcome.message.id)
    await store.append_consent_events([accept(user_id="2088000000000009")], NOW)
    elsewhere = reservation("k-9", user_id="2088000000000009", created_at=NOW + timedelta(hours=3))
    await store.reserve_send(elsewhere)

    newest = sorted(made[2:], reverse=True) + sorted(made[:2], reverse=True)
    first = await store.messages_page(APP, MessageQuery(limit=3))
    last = first[-1]
    rest = await store.messages_page(
        APP, MessageQuery(limit=3, before=(to_millis(last.created_at), last.id))
    )
    pending = await store.messages_page(APP, MessageQuery(limit=10, status="pending"))
    sent = await store.messages_page(APP, MessageQuery(limit=10, status="sent"))
    on_channel = await store.messages_page(
        APP, MessageQuery(limit=10, status="pending", channel="mini_template")
    )
    elsewhere_channel = await store.messages_page(APP, MessageQuery(limit=10, channel="jym_push"))

    assert [m.id for m in first] == [elsewhere.message_id, *newest[:2]]
    assert [m.id for m in rest] == newest[2:]
    assert len(pending) == 5 and sent == [] and elsewhere_channel == []
    assert [m.id for m in on_channel] == [m.id for m in pending]
    assert [m.id for m in await store.messages_of_user(APP, USER, 2)] == newest[:2]
    assert await store.message_counts_of_app(APP) == {("mini_template", "pending"): 5}
    assert await store.message_counts_of_app(OTHER_APP) == {}


async def test_a_notification_shows_the_consent_events_and_deliveries_it_caused(
    store: Store,
) -> None:
    await started(store)
    outcome = await store.record_notification(notification("n-1"), [follow()])
    await store.record_notification(
        notification("n-2"),
        [follow("2088000000000002").model_copy(update={"evidence": "notify:n-2"})],
    )
    await fanned_out(store)

    [caused] = await store.consent_events_of_notification(APP, "n-1")
    [delivery] = await store.deliveries_of_notification(outcome.notification_id)

    assert (caused.user_id, caused.action.value, caused.evidence) == (USER, "follow", "notify:n-1")
    assert (delivery.delivery.destination, delivery.delivery.status.value) == (HOOK, "pending")
    assert delivery.attempts == ()
    assert await store.consent_events_of_notification(OTHER_APP, "n-1") == []
