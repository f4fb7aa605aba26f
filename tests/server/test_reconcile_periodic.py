"""The periodic reconciliation job: its passes go round every user holding open consent, in key
order from where the last pass stopped, and one user's failure does not stop the others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.api.keys import RECONCILER
from tests.server.conftest import APP_ID, StartGateway
from tests.server.fake_alipay import QUERY_METHOD, transient
from tests.server.send_fixtures import ONE_TIME, USER, Sending, fake_alipay, start_sending

OTHER_USER = "2088000000000777"
THIRD_USER = "2088000000000888"


@pytest.fixture
async def env(
    start_gateway: StartGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Sending]:
    async with fake_alipay(monkeypatch) as fake:
        yield await start_sending(start_gateway, tmp_path, fake)


async def test_one_pass_syncs_every_user_with_open_consent(env: Sending) -> None:
    await env.give_credits(1, user=USER)
    await env.give_credits(1, user=OTHER_USER)
    env.fake.subscribed(USER, ONE_TIME, "0")
    env.fake.subscribed(OTHER_USER, ONE_TIME, "1")

    results = await env.gateway.app[RECONCILER].sync_open_consents(users_per_run=10)

    assert results == {(APP_ID, USER): "ok", (APP_ID, OTHER_USER): "ok"}
    assert {call.biz["user_id"] for call in env.fake.queries} == {USER, OTHER_USER}
    assert (await env.credits(user=USER), await env.credits(user=OTHER_USER)) == (0, 1)
    await env.assert_projection_is_the_fold()


async def test_a_user_whose_query_fails_does_not_stop_the_others(env: Sending) -> None:
    await env.give_credits(1, user=USER)
    await env.give_credits(1, user=OTHER_USER)
    env.fake.subscribed(USER, ONE_TIME, "0")
    # Users are synced in key order: OTHER_USER's first query fails.
    env.fake.script(QUERY_METHOD, transient())

    results = await env.gateway.app[RECONCILER].sync_open_consents(users_per_run=10)

    assert results == {(APP_ID, OTHER_USER): "platform_unavailable", (APP_ID, USER): "ok"}
    assert (await env.credits(user=OTHER_USER), await env.credits(user=USER)) == (1, 0)
    await env.assert_projection_is_the_fold()


async def test_a_user_whose_sync_failed_comes_round_again_in_the_next_cycle(env: Sending) -> None:
    for user in (USER, OTHER_USER):
        await env.give_credits(1, user=user)
        env.fake.subscribed(user, ONE_TIME, "0")
    env.fake.script(QUERY_METHOD, transient())
    reconciler = env.gateway.app[RECONCILER]

    runs = [await reconciler.sync_open_consents(users_per_run=1) for _ in range(3)]

    assert runs == [
        {(APP_ID, OTHER_USER): "platform_unavailable"},
        {(APP_ID, USER): "ok"},  # the walk moved past the failed user
        {(APP_ID, OTHER_USER): "ok"},  # USER's consent is closed: the cycle is OTHER_USER alone
    ]
    assert (await env.credits(user=OTHER_USER), await env.credits(user=USER)) == (0, 0)


async def test_a_pass_takes_at_most_users_per_run_in_key_order(env: Sending) -> None:
    for user in (USER, OTHER_USER, THIRD_USER):
        await env.give_credits(1, user=user)

    results = await env.gateway.app[RECONCILER].sync_open_consents(users_per_run=2)

    assert list(results) == [(APP_ID, OTHER_USER), (APP_ID, THIRD_USER)]


async def test_every_open_user_is_reconciled_though_no_sync_changes_anything(
    env: Sending,
) -> None:
    users = (USER, OTHER_USER, THIRD_USER)
    for user in users:
        await env.give_credits(1, user=user)
        env.fake.subscribed(user, ONE_TIME, "1")  # a one-time "1": nothing to record
    reconciler = env.gateway.app[RECONCILER]
    queried = []

    for _ in range(3):
        seen = len(env.fake.queries)
        results = await reconciler.sync_open_consents(users_per_run=2)
        assert set(results.values()) == {"ok"}
        queried.append({call.biz["user_id"] for call in env.fake.queries[seen:]})

    # Key order (OTHER_USER, THIRD_USER, USER), round and round: each user twice in three runs.
    assert queried == [{OTHER_USER, THIRD_USER}, {USER, OTHER_USER}, {THIRD_USER, USER}]
    assert [await env.actions(user=user) for user in users] == [["accept"]] * 3


async def test_the_walk_goes_on_where_it_stopped_after_a_restart(env: Sending) -> None:
    for user in (USER, OTHER_USER, THIRD_USER):
        await env.give_credits(1, user=user)
    assert list(await env.gateway.app[RECONCILER].sync_open_consents(users_per_run=2)) == [
        (APP_ID, OTHER_USER),
        (APP_ID, THIRD_USER),
    ]

    await env.restart()
    results = await env.gateway.app[RECONCILER].sync_open_consents(users_per_run=2)

    assert list(results) == [(APP_ID, USER), (APP_ID, OTHER_USER)]
