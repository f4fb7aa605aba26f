"""The periodic reconciliation's walk, on every Store backend: round the users holding open
mini-program consent in key order, from where the last take stopped, wrapping at the end; the
cursor survives a reopen and takes at once never hold the same users."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from storage import Store
from storage.models import ConsentAction
from tests.storage.conftest import StoreFactory
from tests.storage.records import APP, NOW, accept, follow

OTHER_APP = "2021000000000002"
# In key order: the walk's order, whatever order the users' consents were given or changed in.
OPEN = [(APP, "2088-a"), (APP, "2088-b"), (APP, "2088-c"), (OTHER_APP, "2088-a")]


async def opened(store: Store) -> None:
    """``OPEN``'s users given consent last first, among users whose consent is not open: one
    who cancelled, one who only follows the life account (another channel)."""
    for minute, (app_id, user_id) in enumerate(reversed(OPEN)):
        await store.append_consent_events([accept(minute, user_id=user_id, app_id=app_id)], NOW)
    two_templates = accept(9, user_id="2088-b", template_id="T-long")  # still one user
    cancelled = accept(user_id="2088-aa")
    cancel = cancelled.model_copy(
        update={"action": ConsentAction.CANCEL, "occurred_at": NOW + timedelta(minutes=1)}
    )
    events = [two_templates, cancelled, cancel, follow("2088-ab", APP)]
    await store.append_consent_events(events, NOW)


async def test_takes_go_round_the_open_users_in_key_order(store: Store) -> None:
    await opened(store)

    takes = [await store.take_users_to_reconcile(3) for _ in range(4)]

    assert takes == [OPEN[:3], [OPEN[3], *OPEN[:2]], [*OPEN[2:], OPEN[0]], OPEN[1:]]


async def test_a_take_larger_than_the_open_users_holds_each_once(store: Store) -> None:
    await opened(store)
    await store.take_users_to_reconcile(2)

    first = await store.take_users_to_reconcile(10)
    second = await store.take_users_to_reconcile(10)

    assert first == second == [*OPEN[2:], *OPEN[:2]]


async def test_a_user_whose_consent_opens_behind_the_cursor_comes_in_the_next_cycle(
    store: Store,
) -> None:
    await opened(store)
    assert await store.take_users_to_reconcile(2) == OPEN[:2]

    await store.append_consent_events([accept(user_id="2088-0")], NOW)
    await store.append_consent_events([accept(user_id="2088-bb")], NOW)

    assert await store.take_users_to_reconcile(3) == [(APP, "2088-bb"), *OPEN[2:]]
    assert await store.take_users_to_reconcile(2) == [(APP, "2088-0"), OPEN[0]]


async def test_a_ledger_without_open_consent_takes_no_one(store: Store) -> None:
    assert await store.take_users_to_reconcile(5) == []
    await store.append_consent_events([follow("2088-ab", APP)], NOW)

    assert await store.take_users_to_reconcile(5) == []


async def test_the_walk_goes_on_where_it_stopped_after_a_reopen(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory()
    await opened(store)
    assert await store.take_users_to_reconcile(2) == OPEN[:2]
    await store.close()

    reopened = await store_factory()

    assert await reopened.take_users_to_reconcile(3) == [*OPEN[2:], OPEN[0]]


async def test_takes_at_once_by_two_processes_hold_different_users(
    store_factory: StoreFactory,
) -> None:
    one, other = await store_factory(), await store_factory()
    await opened(one)

    takes = await asyncio.gather(one.take_users_to_reconcile(2), other.take_users_to_reconcile(2))

    assert sorted(takes) == [OPEN[:2], OPEN[2:]]
    assert await one.take_users_to_reconcile(1) == [OPEN[0]]
