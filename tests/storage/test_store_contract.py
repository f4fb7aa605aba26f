"""The behaviour every Store backend must have."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from storage import Store
from tests.storage.conftest import StoreFactory
from tests.storage.records import NOW, follow, notification


async def test_record_is_idempotent_on_app_and_dedupe_key(store: Store) -> None:
    first = await store.record_notification(notification("n-1"), [follow()])
    again = await store.record_notification(notification("n-1"), [follow()])

    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.notification_id == first.notification_id
    assert await store.count_notifications() == 1
    assert len(await store.consent_events("2021000000000001")) == 1


async def test_same_dedupe_key_of_another_app_is_another_notification(store: Store) -> None:
    await store.record_notification(notification("n-1", app_id="2021000000000001"))
    outcome = await store.record_notification(notification("n-1", app_id="2021000000000002"))

    assert not outcome.duplicate
    assert await store.count_notifications() == 2


async def test_fifty_concurrent_copies_are_stored_once(store: Store) -> None:
    outcomes = await asyncio.gather(
        *(store.record_notification(notification("same"), [follow()]) for _ in range(50))
    )

    assert sorted(o.duplicate for o in outcomes) == [False] + [True] * 49
    assert len({o.notification_id for o in outcomes}) == 1
    assert await store.count_notifications() == 1
    assert len(await store.consent_events("2021000000000001")) == 1


async def test_a_crowd_of_new_stored_and_repeated_notifications_gets_each_its_id(
    store: Store,
) -> None:
    stored = [await store.record_notification(notification(f"old-{i}")) for i in range(3)]
    keys = [f"new-{i}" for i in range(30)] + [f"old-{i}" for i in range(3)] + ["new-7"] * 3

    outcomes = await asyncio.gather(*(store.record_notification(notification(k)) for k in keys))

    by_key: dict[str, list[tuple[int, bool]]] = {}
    for key, outcome in zip(keys, outcomes, strict=True):
        by_key.setdefault(key, []).append((outcome.notification_id, outcome.duplicate))
    for key, seen in by_key.items():
        row = await store.get_notification("2021000000000001", key)
        assert row is not None
        assert {notification_id for notification_id, _ in seen} == {row.id}
        new = [duplicate for _, duplicate in seen].count(False)
        assert new == (0 if key.startswith("old-") else 1), key
    assert [o.notification_id for o in stored] == [by_key[f"old-{i}"][0][0] for i in range(3)]
    assert await store.count_notifications() == 33


async def test_stored_notification_reads_back_exactly(store: Store) -> None:
    record = notification("n-exact")
    await store.record_notification(record)

    stored = await store.get_notification(record.app_id, "n-exact")

    assert stored is not None
    assert stored.model_dump(exclude={"id"}) == record.model_dump()
    assert await store.get_notification(record.app_id, "missing") is None


async def test_everything_committed_survives_a_reopen(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await asyncio.gather(*(store.record_notification(notification(f"n-{i}")) for i in range(20)))
    await store.close()

    reopened = await store_factory()

    assert await reopened.count_notifications() == 20


async def test_refusal_counters_add_up(store: Store) -> None:
    await store.add_refusals({("app", "bad_signature"): 2, ("-", "unknown_app"): 1}, NOW)
    await store.add_refusals({("app", "bad_signature"): 3}, NOW)

    counts = {(c.app_id, c.reason): c.count for c in await store.refusal_counts()}

    assert counts == {("app", "bad_signature"): 5, ("-", "unknown_app"): 1}


async def test_consent_events_are_filtered_by_user(store: Store) -> None:
    await store.record_notification(notification("a"), [follow("2088A")])
    await store.record_notification(notification("b"), [follow("2088B")])

    events = await store.consent_events("2021000000000001", "2088B")

    assert [e.user_id for e in events] == ["2088B"]


async def test_pruning_deletes_only_what_was_signed_before_the_cutoff(store: Store) -> None:
    old = notification("old").model_copy(update={"occurred_at": NOW - timedelta(days=30)})
    unsigned = notification("unsigned").model_copy(update={"occurred_at": None})
    await store.record_notification(old)
    await store.record_notification(unsigned)
    await store.record_notification(notification("fresh"))

    assert await store.prune_notifications(NOW - timedelta(days=1)) == 1
    assert await store.prune_notifications(NOW - timedelta(days=1)) == 0

    assert await store.get_notification(old.app_id, "old") is None
    assert await store.count_notifications() == 2
    again = await store.record_notification(old)
    assert not again.duplicate


async def test_every_commit_is_reported_to_the_observer(store: Store) -> None:
    commits: list[tuple[float, int]] = []
    store.observe_commits(lambda seconds, writes: commits.append((seconds, writes)))

    await store.record_notification(notification("n-1"))
    await store.record_notification(notification("n-2"))

    assert len(commits) == 2
    assert all(seconds > 0 and writes == 1 for seconds, writes in commits)
