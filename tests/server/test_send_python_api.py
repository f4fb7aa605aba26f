"""The same send as a coroutine: ``app[SENDER].send(app_id, body, key)`` answers what HTTP answers,
shares its idempotency keys, and refuses with the same errors."""

from __future__ import annotations

import pytest

from server.api.keys import SENDER
from server.errors import TemplateDataMismatch
from server.sending.messages import MessageView
from storage.errors import ConsentRequired, IdempotencyMismatch
from tests.server.conftest import APP_ID
from tests.server.fake_alipay import SEND_METHOD, rejected
from tests.server.send_fixtures import (
    Sending,
    new_key,
    one_time_body,
)


@pytest.fixture
async def env(env: Sending) -> Sending:
    """The shared ``env`` with one one-time credit given."""
    await env.give_credits(1)
    return env


async def test_the_python_api_sends_and_answers_what_http_answers(env: Sending) -> None:
    view = await env.gateway.app[SENDER].send(APP_ID, one_time_body(), new_key())

    assert isinstance(view, MessageView)
    assert view.status == "sent"
    assert view.http_status == 200
    over_http = await env.message(view.message_id)
    assert over_http.body == view.model_dump(mode="json")
    assert len(env.fake.sends) == 1
    assert await env.credits() == 0
    assert await env.actions() == ["accept", "spend"]
    await env.assert_projection_is_the_fold()


async def test_the_python_api_and_http_share_idempotency_keys(env: Sending) -> None:
    key = new_key()
    view = await env.gateway.app[SENDER].send(APP_ID, one_time_body(), key)

    replay = await env.send(one_time_body(), key=key)

    assert (replay.status, replay.body) == (200, view.model_dump(mode="json"))
    assert len(env.fake.sends) == 1


async def test_an_http_send_replayed_through_python_gives_the_same_view(env: Sending) -> None:
    key = new_key()
    env.fake.script(SEND_METHOD, rejected("USER_TEMPLATE_ILLEGAL"))
    over_http = await env.send(one_time_body(), key=key)

    view = await env.gateway.app[SENDER].send(APP_ID, one_time_body(), key)

    assert view.model_dump(mode="json") == over_http.body
    assert (view.status, view.platform and view.platform.sub_code) == (
        "failed",
        "USER_TEMPLATE_ILLEGAL",
    )
    assert len(env.fake.sends) == 1


async def test_the_python_api_raises_consent_required_and_spends_nothing(env: Sending) -> None:
    sender = env.gateway.app[SENDER]
    await sender.send(APP_ID, one_time_body(), new_key())

    with pytest.raises(ConsentRequired):
        await sender.send(APP_ID, one_time_body(), new_key())

    assert len(env.fake.sends) == 1
    assert len(env.messages()) == 1


async def test_the_python_api_raises_the_same_validation_and_conflict_errors(
    env: Sending,
) -> None:
    sender = env.gateway.app[SENDER]
    key = new_key()
    await sender.send(APP_ID, one_time_body(), key)
    out_of_order = one_time_body()
    out_of_order["data"] = dict(reversed(list(out_of_order["data"].items())))

    with pytest.raises(TemplateDataMismatch):
        await sender.send(APP_ID, out_of_order, new_key())
    with pytest.raises(IdempotencyMismatch):
        await sender.send(APP_ID, one_time_body(page="pages/other"), key)

    assert len(env.fake.sends) == 1
    assert len(env.messages()) == 1
