"""``jym_push``: app pushes through TOP ``taobao.jym.message.apppush.send``, checked by the fake
router (its own signer, pinned to the notes' vectors by tests/server/test_top_client.py).

Consent granted, revoked, absent; the platform ``message_id`` is derived from the app and the
Idempotency-Key and never changes across retries; what each class of answer does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.platforms.top import JYM_APPPUSH_SEND
from tests.server.channel_fixtures import (
    JYM_TEMPLATE,
    JYM_USER,
    THROTTLE_DELAY,
    TOP_APP_KEY,
    Channels,
    jym_body,
    running_channels,
)
from tests.server.conftest import APP_ID, StartGateway
from tests.server.fake_top import business_failure, error, hang, raw, success
from tests.server.send_fixtures import BACKOFF, new_key

USER = str(JYM_USER)
TEMPLATE = str(JYM_TEMPLATE)


@pytest.fixture
async def env(
    monkeypatch: pytest.MonkeyPatch, start_gateway: StartGateway, tmp_path: Path
) -> AsyncIterator[Channels]:
    async with running_channels(monkeypatch, start_gateway, tmp_path) as channels:
        yield channels


@pytest.fixture
async def granted(env: Channels) -> Channels:
    await env.consent("jym_push", TEMPLATE, USER)
    return env


def pushes(env: Channels) -> list[dict[str, str]]:
    return [call.params for call in env.top_calls(JYM_APPPUSH_SEND)]


def message_ids(env: Channels) -> list[str]:
    return [params["message_id"] for params in pushes(env)]


async def test_a_granted_push_is_signed_and_sent_as_the_seed_shapes_it(granted: Channels) -> None:
    answer = await granted.send(jym_body())

    assert (answer.status, answer.body["status"]) == (200, "sent")
    [params] = pushes(granted)
    assert params["app_key"] == TOP_APP_KEY and params["sign_method"] == "hmac-sha256"
    assert (params["user_id"], params["template_id"]) == (USER, TEMPLATE)
    assert params["message_id"] == answer.body["message_id"]
    assert json.loads(params["push_content_dto"]) == {
        "push_redirect_url_dto": {
            "redirect_url": "https://m.jiaoyimao.com/order?id=1&from=push",
            "redirect_url_type": 1,
        },
        "title": "订单已发货",
        "content": "您购买的账号已发货 & 可登录",
    }
    assert "session" not in params
    assert answer.body["channel"] == "jym_push"
    assert (answer.body["user_id"], answer.body["template_id"]) == (USER, TEMPLATE)
    assert (answer.body["recipients"], answer.body["skipped"]) == ([USER], [])
    assert answer.body["warnings"] == []
    assert await granted.ledger("jym_push", TEMPLATE, USER) == [
        ("grant", f"form:{USER}"),
        ("spend", f"message:{answer.body['message_id']}"),
    ]
    stored = await granted.message(answer.body["message_id"])
    assert stored.body == answer.body
    await granted.assert_projection_is_the_fold()


async def test_a_push_without_a_redirect_sends_title_and_content_only(granted: Channels) -> None:
    answer = await granted.send(jym_body(push_content={"title": "t", "content": "c"}))

    assert answer.body["status"] == "sent"
    assert json.loads(pushes(granted)[0]["push_content_dto"]) == {"title": "t", "content": "c"}


async def test_the_grant_is_for_one_template(granted: Channels) -> None:
    answer = await granted.send(jym_body(template_id=2))

    assert (answer.status, answer.code) == (403, "consent_required")
    assert pushes(granted) == []


@pytest.mark.parametrize("history", [[], ["granted", "revoked"]], ids=["absent", "revoked"])
async def test_without_a_standing_grant_nothing_is_pushed(
    env: Channels, history: list[str]
) -> None:
    for status in history:
        await env.consent("jym_push", TEMPLATE, USER, status)

    answer = await env.send(jym_body())

    assert (answer.status, answer.code) == (403, "consent_required")
    assert env.top.received == []
    assert await env.message_count() == 0
    await env.assert_projection_is_the_fold()


async def test_a_grant_after_a_revoke_allows_it_again(env: Channels) -> None:
    for status in ("granted", "revoked", "granted"):
        await env.consent("jym_push", TEMPLATE, USER, status)
        env.later(1)  # at one instant a revocation wins: these happen one after the other

    answer = await env.send(jym_body())

    assert answer.body["status"] == "sent"


# -- message_id and idempotency ---------------------------------------------------------------


async def test_a_retried_request_is_the_same_push_and_never_a_second_call(
    granted: Channels,
) -> None:
    key = new_key()
    first = await granted.send(jym_body(), key=key)

    replays = await asyncio.gather(*(granted.send(jym_body(), key=key) for _ in range(3)))

    assert [r.body for r in replays] == [first.body] * 3
    assert message_ids(granted) == [first.body["message_id"]]
    other = await granted.send(jym_body())
    assert message_ids(granted) == [first.body["message_id"], other.body["message_id"]]
    assert other.body["message_id"] != first.body["message_id"]
    conflict = await granted.send(jym_body(template_id=2), key=key)
    assert (conflict.status, conflict.code) == (409, "idempotency_conflict")
    assert len(pushes(granted)) == 2


async def test_the_message_id_is_derived_from_the_app_and_the_key(granted: Channels) -> None:
    """Stable: the same key under the same app always names the same push."""
    key = new_key()
    answer = await granted.send(jym_body(), key=key)

    digest = hashlib.sha256(f"{APP_ID}\n{key}".encode()).hexdigest()
    assert message_ids(granted) == [answer.body["message_id"]] == [f"msg_{digest[:24]}"]


@pytest.mark.parametrize(
    "reply",
    [
        error(15, "Remote service error", "isp.top-remote-connection-timeout", "超时"),
        error(10, "Service Currently Unavailable"),
        raw(502, "Bad Gateway"),
        hang(),
    ],
    ids=["isp-15", "code-10", "http-502", "timeout"],
)
async def test_a_transient_answer_is_retried_with_the_same_message_id(
    granted: Channels, reply: Any
) -> None:
    granted.top.script(reply)

    answer = await granted.send(jym_body())

    assert (answer.status, answer.body["status"]) == (202, "queued")
    assert answer.body["next_attempt_at"] == "2026-11-23T08:00:01Z"  # NOW + BACKOFF[0]
    granted.top.release.set()
    granted.later(BACKOFF[0])
    assert await granted.run_outbox() == 1
    stored = await granted.message(answer.body["message_id"])
    assert (stored.body["status"], stored.body["attempts"]) == ("sent", 2)
    assert message_ids(granted) == [answer.body["message_id"]] * 2
    await granted.assert_projection_is_the_fold()


async def test_a_queued_push_goes_out_after_a_restart_with_the_same_message_id(
    granted: Channels,
) -> None:
    granted.top.script(error(15, "Remote service error", "isp.top-remote-service-unavailable"))
    answer = await granted.send(jym_body())

    await granted.restart()
    granted.later(BACKOFF[0])
    assert await granted.run_outbox() == 1

    assert message_ids(granted) == [answer.body["message_id"]] * 2
    assert (await granted.message(answer.body["message_id"])).body["status"] == "sent"


@pytest.mark.parametrize(
    "reply",
    [
        error(7, "App Call Limited", "accesscontrol.limited-by-app-access-count"),
        error(15, "Remote service error", "isv.access-limited-by-api-access-count"),
        raw(429, "Too Many Requests"),
    ],
    ids=["code-7", "isv-access-limited", "http-429"],
)
async def test_a_throttled_push_waits_the_throttle_delay(granted: Channels, reply: Any) -> None:
    granted.top.script(reply)

    answer = await granted.send(jym_body())

    assert (answer.status, answer.body["status"]) == (202, "queued")
    assert answer.body["next_attempt_at"] == "2026-11-23T08:10:00Z"  # NOW + throttle delay
    granted.later(THROTTLE_DELAY - 1)
    assert await granted.run_outbox() == 0
    granted.later(1)
    assert await granted.run_outbox() == 1
    assert message_ids(granted) == [answer.body["message_id"]] * 2


@pytest.mark.parametrize(
    ("reply", "platform"),
    [
        (
            error(50, "Remote service error", "isv.invalid-parameter", "非法参数"),
            {"code": "50", "msg": "Remote service error", "sub_code": "isv.invalid-parameter"},
        ),
        (error(27, "Invalid session"), {"code": "27", "msg": "Invalid session", "sub_code": None}),
        (
            error(25, "Invalid signature"),
            {"code": "25", "msg": "Invalid signature", "sub_code": None},
        ),
        (
            business_failure(state_code="USER_NOT_EXIST", extra_err_msg="用户不存在"),
            {"code": None, "msg": None, "sub_code": "USER_NOT_EXIST"},
        ),
    ],
    ids=["isv-invalid-parameter", "invalid-session", "invalid-signature", "success-false"],
)
async def test_a_refusal_fails_the_push_and_refunds_its_spend(
    granted: Channels, reply: Any, platform: dict[str, Any]
) -> None:
    granted.top.script(reply)

    answer = await granted.send(jym_body())

    assert (answer.status, answer.body["status"]) == (200, "failed")
    assert {k: answer.body["platform"][k] for k in platform} == platform
    evidence = f"message:{answer.body['message_id']}"
    history = await granted.ledger("jym_push", TEMPLATE, USER)
    assert history[1:] == [("spend", evidence), ("refund", evidence)]
    granted.later(7200)
    assert await granted.run_outbox() == 0
    assert len(pushes(granted)) == 1
    await granted.assert_projection_is_the_fold()


async def test_an_unreadable_200_is_unknown_and_never_retried(granted: Channels) -> None:
    granted.top.script(raw(200, "<html>gateway</html>"))

    answer = await granted.send(jym_body())

    assert (answer.status, answer.body["status"]) == (202, "unknown")
    granted.later(7200)
    assert await granted.run_outbox() == 0
    assert len(pushes(granted)) == 1
    assert [a for a, _ in await granted.ledger("jym_push", TEMPLATE, USER)] == ["grant", "spend"]


async def test_a_success_with_the_seed_result_is_sent(granted: Channels) -> None:
    granted.top.script(success(result=True, state_code="SUCCESS", extra_err_msg="成功"))

    answer = await granted.send(jym_body())

    assert answer.body["status"] == "sent"


# -- validation -------------------------------------------------------------------------------

INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("user_id as a string", jym_body(user_id=USER), "validation_failed", "user_id"),
    ("user_id a boolean", jym_body(user_id=True), "validation_failed", "user_id"),
    ("user_id zero", jym_body(user_id=0), "validation_failed", "user_id"),
    ("template_id as a string", jym_body(template_id="1"), "validation_failed", "template_id"),
    ("template_id too big", jym_body(template_id=2**63), "validation_failed", "template_id"),
    (
        "no title",
        jym_body(push_content={"content": "c"}),
        "validation_failed",
        "push_content.title",
    ),
    (
        "type without url",
        jym_body(push_content={"title": "t", "content": "c", "redirect_url_type": 1}),
        "validation_failed",
        "redirect_url",
    ),
    (
        "unknown push_content key",
        jym_body(push_content={"title": "t", "content": "c", "badge": 1}),
        "validation_failed",
        "badge",
    ),
    (
        "no top_app",
        {k: v for k, v in jym_body().items() if k != "top_app"},
        "validation_failed",
        "top_app",
    ),
    ("unconfigured top_app", jym_body(top_app="other"), "unknown_top_app", "other"),
    ("message_id given", jym_body(message_id="mine"), "validation_failed", "message_id"),
]


@pytest.mark.parametrize(
    ("body", "code", "where"), [i[1:] for i in INVALID], ids=[i[0] for i in INVALID]
)
async def test_an_invalid_push_is_refused_before_anything(
    granted: Channels, body: dict[str, Any], code: str, where: str
) -> None:
    answer = await granted.send(body)

    assert (answer.status, answer.code) == (422, code)
    assert where in answer.body["error"]["message"]
    assert granted.top.received == []
    assert await granted.message_count() == 0
