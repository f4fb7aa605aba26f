"""Reconciliation with alipay.open.app.messagetemplate.subscribe.query, as
server/consent/reconcile.py documents it: "0" cancels, "1" subscribes a long-term template, "1" for
one-time adds nothing; events are ``platform_query``; a failed query records nothing. And
``verify_with_platform``."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.models import ConsentSource
from tests.server.conftest import APP_ID, StartGateway
from tests.server.fake_alipay import (
    QUERY_METHOD,
    SEND_METHOD,
    FakeAlipay,
    Reply,
    badly_signed,
    http_500,
    rejected,
    success,
    transient,
)
from tests.server.send_fixtures import (
    FOURTH_ONE_TIME,
    LONG_TERM,
    ONE_TIME,
    OPEN_ID,
    THIRD_ONE_TIME,
    USER,
    Sending,
    long_term_body,
    new_key,
    one_time_body,
    send_settings,
    start_sending,
)

REGISTERED = [ONE_TIME, LONG_TERM, THIRD_ONE_TIME, FOURTH_ONE_TIME]


@pytest.fixture
async def verifying(start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay) -> Sending:
    """An app with ``verify_with_platform = true``."""
    settings = send_settings(tmp_path, fake, verify_with_platform=True)
    return await start_sending(start_gateway, tmp_path, fake, settings)


async def platform_events(env: Sending, user: str = USER) -> list[tuple[str, str]]:
    events = await env.store.consent_events(APP_ID, user)
    return [
        (e.template_id, e.action.value) for e in events if e.source is ConsentSource.PLATFORM_QUERY
    ]


async def test_sync_queries_every_registered_template_at_most_three_per_call(
    env: Sending,
) -> None:
    answer = await env.sync()

    assert answer.status == 200, answer.body
    assert answer.body["queried"] == REGISTERED
    assert len(env.fake.queries) == 2
    lists = [call.biz["template_id_list"] for call in env.fake.queries]
    assert [len(ids) for ids in lists] == [3, 1]
    assert [t for ids in lists for t in ids] == REGISTERED
    assert all(call.biz["user_id"] == USER for call in env.fake.queries)
    assert env.fake.sends == []


async def test_a_user_known_by_open_id_is_queried_by_open_id(env: Sending) -> None:
    await env.sync(OPEN_ID)

    assert {call.biz.get("open_id") for call in env.fake.queries} == {OPEN_ID}
    assert all("user_id" not in call.biz for call in env.fake.queries)


async def test_state_0_cancels_an_open_one_time_credit(env: Sending) -> None:
    await env.give_credits(2)
    env.fake.subscribed(USER, ONE_TIME, "0")

    answer = await env.sync()

    assert answer.body["changes"] == [{"template_id": ONE_TIME, "action": "cancel"}]
    assert await platform_events(env) == [(ONE_TIME, "cancel")]
    state = await env.state(ONE_TIME)
    assert (state.status, state.credits, state.last_source) == ("cancelled", 0, "platform_query")
    refused = await env.send(one_time_body())
    assert (refused.status, refused.code) == (403, "consent_required")
    assert env.fake.sends == []
    await env.assert_projection_is_the_fold()


async def test_state_0_cancels_a_long_term_subscription(env: Sending) -> None:
    await env.accept(LONG_TERM)
    env.fake.subscribed(USER, LONG_TERM, "0", "longterm")

    await env.sync()

    assert await platform_events(env) == [(LONG_TERM, "cancel")]
    assert (await env.state(LONG_TERM)).status == "cancelled"
    refused = await env.send(long_term_body())
    assert (refused.status, refused.code) == (403, "consent_required")
    assert env.fake.sends == []
    await env.assert_projection_is_the_fold()


async def test_state_0_for_a_template_without_open_consent_records_nothing(env: Sending) -> None:
    env.fake.subscribed(USER, ONE_TIME, "0")

    answer = await env.sync()

    assert answer.body["changes"] == []
    assert await env.store.consent_events(APP_ID) == []


async def test_state_1_subscribes_a_long_term_template(env: Sending) -> None:
    env.fake.subscribed(USER, LONG_TERM, "1", "longterm")

    answer = await env.sync()

    assert answer.body["changes"] == [{"template_id": LONG_TERM, "action": "accept"}]
    assert await platform_events(env) == [(LONG_TERM, "accept")]
    assert (await env.state(LONG_TERM)).status == "subscribed"
    sent = await env.send(long_term_body())
    assert (sent.status, sent.body["status"]) == (200, "sent")
    await env.assert_projection_is_the_fold()


async def test_state_1_for_a_one_time_template_adds_no_credit(env: Sending) -> None:
    env.fake.subscribed(USER, ONE_TIME, "1")
    env.fake.subscribed(USER, THIRD_ONE_TIME, "1")
    await env.give_credits(1, template=THIRD_ONE_TIME)

    answer = await env.sync()

    assert answer.body["changes"] == []
    assert await platform_events(env) == []
    assert await env.store.consent_states(APP_ID, USER, "mini_template", ONE_TIME) == []
    assert await env.credits(THIRD_ONE_TIME) == 1
    refused = await env.send(one_time_body())
    assert (refused.status, refused.code) == (403, "consent_required")


async def test_a_template_missing_from_the_answer_keeps_its_credit(env: Sending) -> None:
    await env.give_credits(1)

    answer = await env.sync()

    assert answer.body["changes"] == []
    assert await env.credits() == 1


async def test_syncing_twice_appends_nothing_the_second_time(env: Sending) -> None:
    await env.give_credits(1)
    await env.accept(LONG_TERM)
    env.fake.subscribed(USER, ONE_TIME, "0")
    env.fake.subscribed(USER, THIRD_ONE_TIME, "1")
    env.fake.subscribed(USER, FOURTH_ONE_TIME, "1")
    env.fake.subscribed(USER, LONG_TERM, "1", "longterm")
    first = await env.sync()
    events = await env.store.consent_events(APP_ID)

    second = await env.sync()

    assert first.body["changes"] == [{"template_id": ONE_TIME, "action": "cancel"}]
    assert second.status == 200
    assert second.body["changes"] == []
    assert await env.store.consent_events(APP_ID) == events
    assert len(env.fake.queries) == 4
    assert second.body["subscriptions"] == first.body["subscriptions"]
    await env.assert_projection_is_the_fold()


@pytest.mark.parametrize(
    "failure",
    [transient(), http_500(), badly_signed(), rejected("isv.invalid-parameter", "参数无效")],
    ids=["20000", "HTTP 500", "bad signature", "40004"],
)
async def test_a_failed_query_is_503_and_records_nothing(env: Sending, failure: Reply) -> None:
    await env.give_credits(1)
    env.fake.subscribed(USER, ONE_TIME, "0")
    env.fake.script(QUERY_METHOD, failure)

    answer = await env.sync()

    assert (answer.status, answer.code) == (503, "platform_unavailable")
    assert await env.actions() == ["accept"]
    assert await env.credits() == 1
    await env.assert_projection_is_the_fold()


async def test_a_failure_of_the_second_batch_records_nothing_of_the_first(env: Sending) -> None:
    await env.give_credits(1)
    env.fake.subscribed(USER, ONE_TIME, "0")  # in the first batch
    env.fake.script(QUERY_METHOD, success(), transient())

    answer = await env.sync()

    assert (answer.status, answer.code) == (503, "platform_unavailable")
    assert len(env.fake.queries) == 2
    assert await env.actions() == ["accept"]
    assert await env.credits() == 1


# -- verify_with_platform -------------------------------------------------------------------


async def test_with_verify_with_platform_a_0_answer_refuses_the_send(verifying: Sending) -> None:
    await verifying.give_credits(1)
    verifying.fake.subscribed(USER, ONE_TIME, "0")

    answer = await verifying.send(one_time_body())

    assert (answer.status, answer.code) == (403, "consent_required")
    [query] = verifying.fake.calls
    assert query.method == QUERY_METHOD
    assert query.biz == {"template_id_list": [ONE_TIME], "user_id": USER}
    assert verifying.messages() == []
    assert await verifying.actions() == ["accept", "cancel"]
    assert await platform_events(verifying) == [(ONE_TIME, "cancel")]
    await verifying.assert_projection_is_the_fold()


async def test_with_verify_with_platform_a_1_answer_lets_the_send_through(
    verifying: Sending,
) -> None:
    await verifying.give_credits(1)
    verifying.fake.subscribed(USER, ONE_TIME, "1")

    answer = await verifying.send(one_time_body())

    assert (answer.status, answer.body["status"]) == (200, "sent")
    assert [call.method for call in verifying.fake.calls] == [QUERY_METHOD, SEND_METHOD]
    assert await verifying.actions() == ["accept", "spend"]
    await verifying.assert_projection_is_the_fold()


async def test_with_verify_with_platform_an_unavailable_platform_spends_nothing(
    verifying: Sending,
) -> None:
    await verifying.give_credits(1)
    verifying.fake.script(QUERY_METHOD, transient())

    answer = await verifying.send(one_time_body())

    assert (answer.status, answer.code) == (503, "platform_unavailable")
    assert verifying.fake.sends == []
    assert verifying.messages() == []
    assert await verifying.actions() == ["accept"]


async def test_a_long_term_template_cancelled_then_subscribed_again_is_subscribed(
    env: Sending,
) -> None:
    await env.accept(LONG_TERM)
    env.fake.subscribed(USER, LONG_TERM, "0", "longterm")
    await env.sync()
    env.fake.subscribed(USER, LONG_TERM, "1", "longterm")  # the user subscribed again

    answer = await env.sync()  # the clock has not moved: the same millisecond

    assert answer.body["changes"] == [{"template_id": LONG_TERM, "action": "accept"}]
    assert (await env.state(LONG_TERM)).status == "subscribed"
    assert await env.actions(LONG_TERM) == ["accept", "cancel", "accept"]
    again = await env.sync()
    assert again.body["changes"] == []
    await env.assert_projection_is_the_fold()


async def test_with_verify_with_platform_a_replay_answers_without_asking_the_platform(
    verifying: Sending,
) -> None:
    await verifying.give_credits(1)
    verifying.fake.subscribed(USER, ONE_TIME, "1")
    key = new_key()
    first = await verifying.send(one_time_body(), key=key)
    verifying.fake.script(QUERY_METHOD, transient())  # the platform is down now

    again = await verifying.send(one_time_body(), key=key)

    assert (again.status, again.body) == (200, first.body)
    assert [call.method for call in verifying.fake.calls] == [QUERY_METHOD, SEND_METHOD]
    assert await verifying.actions() == ["accept", "spend"]
