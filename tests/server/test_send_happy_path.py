"""POST /v1/apps/{app}/messages: a consented send reaches Alipay signed and spends its credit;
an invalid or unconsented one is refused before anything is spent or called."""

from __future__ import annotations

import json
from typing import Any

import pytest

from storage.models import ConsentAction, ConsentSource
from tests.server.conftest import APP_ID
from tests.server.fake_alipay import SEND_METHOD
from tests.server.send_fixtures import (
    LONG_TERM,
    ONE_TIME,
    OPEN_ID,
    OTHER_USER,
    UNREGISTERED,
    USER,
    Sending,
    long_term_body,
    one_time_body,
)


async def test_a_send_with_a_one_time_credit_is_sent_and_spends_the_credit(env: Sending) -> None:
    await env.give_credits(1)
    assert await env.credits() == 1

    answer = await env.send(one_time_body())

    assert answer.status == 200, answer.body
    assert answer.body["status"] == "sent"
    message_id = answer.body["message_id"]
    assert await env.credits() == 0
    spends = [e for e in await env.events() if e.action is ConsentAction.SPEND]
    assert [(e.source, e.evidence) for e in spends] == [
        (ConsentSource.SEND, f"message:{message_id}")
    ]
    assert await env.actions() == ["accept", "spend"]
    row = await env.row(message_id)
    assert (row.status, row.attempts, row.platform_code) == ("sent", 1, "10000")
    assert len(env.fake.sends) == 1
    await env.assert_projection_is_the_fold()


async def test_the_gateway_receives_one_request_with_alipays_common_params(
    env: Sending,
) -> None:
    await env.give_credits(1)

    await env.send(one_time_body())

    assert env.fake.refused == []
    [call] = env.fake.calls  # each verified by the official SDK (V2 rules, app public key)
    params = call.params
    assert params["method"] == SEND_METHOD
    assert (params["app_id"], params["format"], params["version"]) == (APP_ID, "json", "1.0")
    assert (params["charset"], params["sign_type"]) == ("utf-8", "RSA2")
    assert params["timestamp"] == "2026-11-23 16:00:00"  # NOW is 08:00 UTC: Beijing is UTC+8
    assert "encrypt_type" not in params and "app_cert_sn" not in params


async def test_biz_content_carries_the_recipient_template_and_data_as_a_json_string(
    env: Sending,
) -> None:
    await env.give_credits(1)

    await env.send(one_time_body())

    [call] = env.fake.sends
    assert set(call.biz) == {"to_user_id", "user_template_id", "page", "data"}
    assert (call.biz["to_user_id"], call.biz["user_template_id"]) == (USER, ONE_TIME)
    assert call.biz["page"] == "pages/orders/detail?id=20261123001"
    assert isinstance(call.biz["data"], str)
    data = json.loads(call.biz["data"])
    assert list(data) == ["keyword1", "keyword2", "keyword3"]
    assert data == {
        "keyword1": {"value": "订单已发货"},
        "keyword2": {"value": "2026-11-23 16:00"},
        "keyword3": {"value": "SF1234567890"},
    }


async def test_to_open_id_is_sent_instead_of_to_user_id(env: Sending) -> None:
    await env.give_credits(1, user=OPEN_ID)

    answer = await env.send(one_time_body(to_user_id=None, to_open_id=OPEN_ID))

    assert (answer.status, answer.body["status"]) == (200, "sent")
    [call] = env.fake.sends
    assert call.biz["to_open_id"] == OPEN_ID
    assert "to_user_id" not in call.biz
    assert await env.credits(user=OPEN_ID) == 0
    assert answer.body["user_id"] == OPEN_ID
    await env.assert_projection_is_the_fold()


async def test_a_long_term_subscriber_can_be_sent_to_repeatedly(env: Sending) -> None:
    await env.accept(LONG_TERM)

    answers = [await env.send(long_term_body()) for _ in range(3)]

    assert [(a.status, a.body["status"]) for a in answers] == [(200, "sent")] * 3
    assert len({a.body["message_id"] for a in answers}) == 3
    assert len(env.fake.sends) == 3
    assert {c.biz["user_template_id"] for c in env.fake.sends} == {LONG_TERM}
    state = await env.state(LONG_TERM)
    assert state.status == "subscribed"
    assert await env.actions(LONG_TERM) == ["accept", "spend", "spend", "spend"]
    await env.assert_projection_is_the_fold()


async def test_a_value_of_exactly_50_characters_is_sent(env: Sending) -> None:
    await env.give_credits(1)
    data = {"keyword1": {"value": "单" * 50}, "keyword2": {"value": "x"}, "keyword3": {"value": ""}}

    answer = await env.send(one_time_body(data=data))

    assert (answer.status, answer.body["status"]) == (200, "sent")
    assert json.loads(env.fake.sends[0].biz["data"])["keyword1"]["value"] == "单" * 50


async def test_get_message_shows_status_attempts_platform_codes_and_timestamps(
    env: Sending,
) -> None:
    await env.give_credits(1)
    sent = await env.send(one_time_body())

    answer = await env.message(sent.body["message_id"])

    assert answer.status == 200
    assert answer.body == {
        "message_id": sent.body["message_id"],
        "status": "sent",
        "channel": "mini_template",
        "user_id": USER,
        "template_id": ONE_TIME,
        "attempts": 1,
        "platform": {"code": "10000", "msg": "Success", "sub_code": None, "sub_msg": None},
        "last_error": None,
        "created_at": "2026-11-23T08:00:00Z",
        "updated_at": "2026-11-23T08:00:00Z",
        "sent_at": "2026-11-23T08:00:00Z",
        "next_attempt_at": None,
        "recipients": [USER],
        "skipped": [],
        "warnings": [],
        "settlement": None,
    }
    assert answer.body == sent.body


async def test_get_of_an_unknown_message_is_404(env: Sending) -> None:
    answer = await env.message("msg_000000000000000000000000")

    assert (answer.status, answer.code) == (404, "not_found")


# -- refusals: nothing spent, nothing called -------------------------------------------------


async def assert_nothing_happened(env: Sending, credits: int = 1) -> None:
    assert env.fake.calls == []
    assert env.messages() == []
    assert await env.actions() == ["accept"] * credits
    assert await env.credits() == credits
    await env.assert_projection_is_the_fold()


async def test_without_consent_the_send_is_refused_and_nothing_is_recorded(env: Sending) -> None:
    answer = await env.send(one_time_body())

    assert (answer.status, answer.code) == (403, "consent_required")
    assert env.fake.calls == []
    assert env.messages() == []
    assert await env.store.consent_events(APP_ID) == []


async def test_a_credit_of_another_user_or_template_does_not_allow_the_send(env: Sending) -> None:
    await env.give_credits(1, user=OTHER_USER)
    await env.accept(LONG_TERM, user=OTHER_USER)

    refused = [
        await env.send(one_time_body()),
        await env.send(long_term_body()),
    ]

    assert [(a.status, a.code) for a in refused] == [(403, "consent_required")] * 2
    assert env.fake.calls == []
    assert env.messages() == []
    assert await env.credits(user=OTHER_USER) == 1
    await env.assert_projection_is_the_fold()


def _data(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {name: {"value": value} for name, value in pairs}


INVALID_SENDS: list[tuple[str, dict[str, Any], int, str]] = [
    ("unregistered template", one_time_body(template_id=UNREGISTERED), 422,
     "template_not_registered"),
    ("a keyword missing", one_time_body(data=_data(("keyword1", "a"), ("keyword2", "b"))), 422,
     "template_data_mismatch"),
    ("an extra keyword",
     one_time_body(data=_data(("keyword1", "a"), ("keyword2", "b"), ("keyword3", "c"),
                              ("keyword4", "d"))),
     422, "template_data_mismatch"),
    ("keywords out of order",
     one_time_body(data=_data(("keyword2", "b"), ("keyword1", "a"), ("keyword3", "c"))),
     422, "template_data_mismatch"),
    ("a value of 51 characters",
     one_time_body(data=_data(("keyword1", "单" * 51), ("keyword2", "b"), ("keyword3", "c"))),
     422, "keyword_too_long"),
    ("both recipients", one_time_body(to_open_id=OPEN_ID), 422, "validation_failed"),
    ("no recipient", one_time_body(to_user_id=None), 422, "validation_failed"),
    ("an unknown channel", one_time_body(channel="sms"), 422, "unknown_channel"),
    ("no channel", one_time_body(channel=None), 422, "unknown_channel"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [case[1:] for case in INVALID_SENDS],
    ids=[case[0] for case in INVALID_SENDS],
)
async def test_an_invalid_send_is_refused_before_anything_is_spent(
    env: Sending, body: dict[str, Any], status: int, code: str
) -> None:
    await env.give_credits(1)

    answer = await env.send(body)

    assert (answer.status, answer.code) == (status, code), answer.body
    await assert_nothing_happened(env)


async def test_a_send_without_an_idempotency_key_is_400_and_spends_nothing(env: Sending) -> None:
    await env.give_credits(1)

    answer = await env.send(one_time_body(), key="")

    assert (answer.status, answer.code) == (400, "idempotency_key_required")
    await assert_nothing_happened(env)
