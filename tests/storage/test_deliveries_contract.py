"""What every Store backend keeps of a delivery: each attempt, the verdicts of the owner holding
it, the backlog and history an operator reads, replays, and the notifications still owed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage import Store
from storage.models import (
    ClaimedDelivery,
    DeliveryAttempt,
    DeliveryStatus,
    DeliveryVerdict,
    DestinationBacklog,
    EventType,
)
from tests.storage.event_log import (
    HOOK,
    LEASE,
    claim,
    claimed_keys,
    everything,
    fanned_out,
    outcome,
    started,
)
from tests.storage.records import APP, NOW, notification

DELIVERED, RETRY, DEAD = DeliveryVerdict.DELIVERED, DeliveryVerdict.RETRY, DeliveryVerdict.DEAD
T1, T2, T3 = (NOW + timedelta(minutes=m) for m in (1, 2, 3))


async def delivering(store: Store, *keys: str) -> list[ClaimedDelivery]:
    """A notification for each key, fanned out to the hook and claimed by worker-a at NOW."""
    await started(store)
    for key in keys:
        await store.record_notification(notification(key))
    await fanned_out(store)
    return await claim(store)


async def test_a_claim_reads_back_the_models_validation_would_make(store: Store) -> None:
    """Claims are read back without validating again: each field must already be of its type,
    exactly what validating the same values makes (times, enums, bytes, the nested models)."""
    claimed = await delivering(store, "n-1", "n-2")

    assert len(claimed) == 2
    for item in claimed:
        assert ClaimedDelivery.model_validate(item.model_dump()) == item
        for model in (item, item.delivery, item.event, item.event.notification):
            assert model is not None and model.model_fields_set == set(type(model).model_fields)
        assert item.event.notification is not None
        assert isinstance(item.event.notification.raw_body, bytes)
        assert item.delivery.next_attempt_at.tzinfo is not None


async def test_each_verdict_is_applied_and_each_attempt_kept(store: Store) -> None:
    done, failing, gone = await delivering(store, "n-1", "n-2", "n-3")

    applied = await store.finish_deliveries(
        "worker-a",
        [
            outcome(done, DELIVERED, 204, at=T1),
            outcome(failing, RETRY, 503, at=T1, error="unavailable", retry_at=T3),
            outcome(gone, DEAD, None, at=T2, error="connection refused"),
        ],
    )

    assert applied == 3
    [delivered] = await store.delivery_histories(HOOK, "delivered", 10)
    [retrying] = await store.delivery_histories(HOOK, "failing", 10)
    [dead] = await store.delivery_histories(HOOK, "dead", 10)
    assert delivered.delivery.id == done.delivery.id
    assert (delivered.delivery.delivered_at, delivered.delivery.last_status) == (T1, 204)
    assert (retrying.delivery.status, retrying.delivery.next_attempt_at) == ("pending", T3)
    assert (retrying.delivery.last_error, retrying.delivery.updated_at) == ("unavailable", T1)
    assert (dead.delivery.status, dead.delivery.last_status) == (DeliveryStatus.DEAD, None)
    assert [h.delivery.attempts for h in (delivered, retrying, dead)] == [1, 1, 1]
    assert dead.attempts == (
        DeliveryAttempt(
            attempted_at=T2, status_code=None, latency_ms=250, error="connection refused"
        ),
    )
    assert await claim(store, "worker-b", T3 - timedelta(milliseconds=1)) == []
    assert claimed_keys(await claim(store, "worker-b", T3)) == ["n-2"]


async def test_an_attempt_under_a_lost_lease_is_kept_and_changes_nothing(store: Store) -> None:
    [held] = await delivering(store, "n-1")
    late = NOW + LEASE + timedelta(seconds=1)
    [taken] = await claim(store, "worker-b", late)

    lost = await store.finish_deliveries("worker-a", [outcome(held, DELIVERED, at=NOW)])
    won = await store.finish_deliveries("worker-b", [outcome(taken, RETRY, 500, at=late)])

    assert (lost, won) == (0, 1)
    [history] = await store.delivery_histories(HOOK, "failing", 10)
    assert (history.delivery.attempts, history.delivery.last_status) == (1, 500)
    assert [a.attempted_at for a in history.attempts] == [NOW, late]  # both kept
    assert await store.delivery_histories(HOOK, "delivered", 10) == []


async def test_the_backlog_of_each_destination(store: Store) -> None:
    await started(store, "quiet")
    first, second, third, _ = await delivering(store, "n-1", "n-2", "n-3", "n-4")

    await store.finish_deliveries(
        "worker-a",
        [
            outcome(first, RETRY, 500, at=T1, error="boom", retry_at=T3),
            outcome(second, DEAD, 410, at=T2, error="gone"),
            outcome(third, DELIVERED, at=T2),
        ],
    )

    assert await store.destination_backlogs() == [
        DestinationBacklog(
            destination=HOOK,
            pending=2,
            failing=1,
            dead=1,
            oldest_pending_at=NOW,
            last_error="gone",
            last_error_at=T2,
        ),
        DestinationBacklog(destination="quiet"),
    ]


async def test_histories_are_read_newest_first_a_page_at_a_time(store: Store) -> None:
    claimed = await delivering(store, *(f"n-{i}" for i in range(5)))
    first = claimed[0]
    await store.finish_deliveries("worker-a", [outcome(first, RETRY, 500, at=T1, retry_at=T1)])
    [again] = await claim(store, "worker-a", T1)
    await store.finish_deliveries("worker-a", [outcome(again, DELIVERED, at=T2)])

    pages, before = [], None
    while page := await store.delivery_histories(HOOK, "pending", 2, before):
        pages.append([h.delivery.id for h in page])
        before = page[-1].delivery.id

    ids = [c.delivery.id for c in claimed[1:]]
    assert pages == [ids[:-3:-1], ids[-3::-1]]
    [delivered] = await store.delivery_histories(HOOK, "delivered", 10)
    assert [a.attempted_at for a in delivered.attempts] == [T1, T2]
    assert delivered.event_type is EventType.NOTIFICATION_RECEIVED
    assert delivered.delivery.attempts == 2
    assert await store.delivery_histories(HOOK, "failing", 10) == []
    with pytest.raises(ValueError, match="no delivery state"):
        await store.delivery_histories(HOOK, "lost", 10)


async def test_a_replayed_delivery_is_due_at_once_with_its_attempts_kept(store: Store) -> None:
    [gone] = await delivering(store, "n-1")
    await store.finish_deliveries("worker-a", [outcome(gone, DEAD, 410, at=T1)])

    assert await store.replay_delivery(HOOK, gone.event.id, T2)
    assert not await store.replay_delivery(HOOK, gone.event.id + 1000, T2)
    assert not await store.replay_delivery("elsewhere", gone.event.id, T2)

    [again] = await claim(store, "worker-b", T2)
    delivery = again.delivery
    assert (delivery.id, delivery.status, delivery.attempts) == (gone.delivery.id, "pending", 1)
    assert (delivery.next_attempt_at, delivery.retry_since) == (T2, T2)


async def test_a_replay_since_makes_the_missing_deliveries_and_resets_the_others(
    store: Store,
) -> None:
    received = {"n-old": NOW - timedelta(hours=1), "n-1": NOW, "n-2": NOW + timedelta(seconds=1)}
    for key in ("n-old", "n-1"):
        await store.record_notification(
            notification(key).model_copy(update={"received_at": received[key]})
        )
    await started(store)  # n-old and n-1 came before the hook: none of theirs
    await store.record_notification(
        notification("n-2").model_copy(update={"received_at": received["n-2"]})
    )
    since = NOW - timedelta(minutes=1)

    assert (
        await store.replay_since(HOOK, since, everything, T1) == 1
    )  # n-1: n-2 is after the cursor
    assert await fanned_out(store) == 1
    made = await claim(store, "worker-a", T1)
    assert claimed_keys(made) == ["n-1", "n-2"]
    await store.finish_deliveries("worker-a", [outcome(made[0], DELIVERED, at=T1)])

    assert await store.replay_since(HOOK, since, everything, T2) == 2
    assert await store.replay_since(HOOK, since, lambda head: head.kind == "other", T2) == 0
    assert await store.replay_since("never-seen", since, everything, T2) == 0
    again = await claim(store, "worker-b", T2)
    assert claimed_keys(again) == ["n-1", "n-2"]
    assert {(c.delivery.retry_since, c.delivery.delivered_at) for c in again} == {(T2, None)}


async def test_a_notification_still_owed_to_a_destination_is_not_pruned(store: Store) -> None:
    old = NOW - timedelta(days=30)
    await started(store)
    for key in ("owed", "delivered"):
        await store.record_notification(notification(key).model_copy(update={"occurred_at": old}))
    await fanned_out(store)
    owed, delivered = await claim(store)
    await store.finish_deliveries("worker-a", [outcome(delivered, DELIVERED)])

    assert await store.prune_notifications(NOW - timedelta(days=1)) == 1

    assert await store.get_notification(APP, "delivered") is None
    kept = await store.get_notification(APP, "owed")
    assert kept is not None and kept == owed.event.notification
    await store.finish_deliveries("worker-a", [outcome(owed, DEAD, 410)])
    assert await store.prune_notifications(NOW - timedelta(days=1)) == 1
