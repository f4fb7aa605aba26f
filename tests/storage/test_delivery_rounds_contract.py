"""A delivery round on every Store backend: the verdicts of the last batch kept, new events fanned
out and the next batch claimed, in one transaction, each part as its own method would do it."""

from __future__ import annotations

from datetime import timedelta

from storage import Store
from storage.models import DeliveryResult, DeliveryRound, DeliveryVerdict, RoundOutcome
from tests.storage.event_log import (
    HOOK,
    LEASE,
    claim,
    claimed_keys,
    everything,
    outcome,
    settled,
    started,
)
from tests.storage.records import NOW, accept, notification

DELIVERED, RETRY = DeliveryVerdict.DELIVERED, DeliveryVerdict.RETRY


async def round_of(
    store: Store,
    kept: tuple[DeliveryResult, ...] = (),
    owner: str = "worker-a",
    fan_out_limit: int = 100,
    claim_limit: int = 100,
) -> RoundOutcome:
    await settled(store)
    work = DeliveryRound(HOOK, owner, kept, NOW, NOW + LEASE, fan_out_limit, claim_limit)
    return await store.advance_deliveries(work, everything)


async def test_a_round_fans_out_and_claims_what_it_read(store: Store) -> None:
    await started(store)
    for key in ("n-1", "n-2", "n-3"):
        await store.record_notification(notification(key))

    first = await round_of(store, fan_out_limit=2, claim_limit=1)
    second = await round_of(store, fan_out_limit=2)

    assert (first.read, first.applied, len(first.claimed)) == (2, 0, 1)
    assert (second.read, second.applied, len(second.claimed)) == (1, 0, 2)
    assert claimed_keys(first.claimed + second.claimed) == ["n-1", "n-2", "n-3"]
    assert await claim(store, "worker-b") == []  # all three leased


async def test_a_users_next_event_is_claimed_by_the_round_keeping_the_one_before(
    store: Store,
) -> None:
    await started(store)
    await store.append_consent_events([accept(1, user_id="2088A")], NOW)
    await store.append_consent_events([accept(2, user_id="2088A")], NOW)
    [first] = (await round_of(store)).claimed

    after = await round_of(store, kept=(outcome(first, DELIVERED),))

    assert (after.read, after.applied) == (0, 1)
    [second] = after.claimed
    assert second.event.user_id == "2088A" and second.event.id > first.event.id
    [history] = await store.delivery_histories(HOOK, "delivered", 10)
    assert history.delivery.id == first.delivery.id


async def test_a_retry_kept_by_a_round_holds_the_users_next_event_back(store: Store) -> None:
    await started(store)
    await store.append_consent_events([accept(1, user_id="2088A")], NOW)
    await store.append_consent_events([accept(2, user_id="2088A")], NOW)
    [first] = (await round_of(store)).claimed
    later = NOW + timedelta(minutes=5)

    after = await round_of(store, kept=(outcome(first, RETRY, 503, retry_at=later),))

    assert (after.applied, after.claimed) == (1, [])
    [again] = await claim(store, "worker-b", later)
    assert again.delivery.id == first.delivery.id


async def test_verdicts_under_a_lease_another_owner_took_are_kept_and_change_nothing(
    store: Store,
) -> None:
    await started(store)
    await store.record_notification(notification("n-1"))
    [held] = (await round_of(store)).claimed
    [taken] = await claim(store, "worker-b", NOW + LEASE + timedelta(seconds=1))

    lost = await round_of(store, kept=(outcome(held, DELIVERED),))

    assert (lost.applied, lost.claimed) == (0, [])
    [history] = await store.delivery_histories(HOOK, "pending", 10)
    assert history.delivery.id == taken.delivery.id and len(history.attempts) == 1
