"""What each answer of Alipay does to a message and its credit: sent, failed and refunded,
queued and retried with backoff, or unknown (never retried, never success)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.models import ConsentAction
from tests.server.conftest import NOW, StartGateway
from tests.server.fake_alipay import (
    SEND_METHOD,
    FakeAlipay,
    Reply,
    badly_signed,
    hang,
    http_500,
    rejected,
    transient,
    unsigned,
)
from tests.server.send_fixtures import (
    BACKOFF,
    Sending,
    one_time_body,
    send_settings,
    start_sending,
)


@pytest.fixture
async def env(env: Sending) -> Sending:
    """The shared ``env`` with one one-time credit given."""
    await env.give_credits(1)
    return env


@pytest.mark.parametrize(
    "sub_code", ["USER_TEMPLATE_ILLEGAL", "USER_TEMPLATE_LACK_KEYWORD", "USER_KEYWORD_LENGTH_ERROR"]
)
async def test_a_business_failure_fails_the_message_and_refunds_the_credit(
    env: Sending, sub_code: str
) -> None:
    env.fake.script(SEND_METHOD, rejected(sub_code))

    answer = await env.send(one_time_body())

    assert (answer.status, answer.body["status"]) == (200, "failed")
    assert answer.body["platform"] == {
        "code": "40004",
        "msg": "Business Failed",
        "sub_code": sub_code,
        "sub_msg": "模板非法",
    }
    assert await env.credits() == 1
    assert await env.actions() == ["accept", "spend", "refund"]
    refund = [e for e in await env.events() if e.action is ConsentAction.REFUND]
    assert [e.evidence for e in refund] == [f"message:{answer.body['message_id']}"]
    await env.assert_projection_is_the_fold()


async def test_a_failed_message_is_never_retried(env: Sending) -> None:
    env.fake.script(SEND_METHOD, rejected("USER_TEMPLATE_ILLEGAL"))
    answer = await env.send(one_time_body())

    env.later(3600)
    attempted = await env.run_outbox()

    assert attempted == 0
    assert len(env.fake.sends) == 1
    row = await env.row(answer.body["message_id"])
    assert (row.status, row.attempts) == ("failed", 1)


async def test_the_refunded_credit_can_be_spent_by_the_next_send(env: Sending) -> None:
    env.fake.script(SEND_METHOD, rejected("USER_TEMPLATE_ILLEGAL"))
    await env.send(one_time_body())

    answer = await env.send(one_time_body())

    assert (answer.status, answer.body["status"]) == (200, "sent")
    assert await env.credits() == 0
    assert await env.actions() == ["accept", "spend", "refund", "spend"]
    await env.assert_projection_is_the_fold()


async def test_20000_queues_the_message_with_the_credit_still_reserved(env: Sending) -> None:
    env.fake.script(SEND_METHOD, transient())

    answer = await env.send(one_time_body())

    assert (answer.status, answer.body["status"]) == (202, "queued")
    assert answer.body["next_attempt_at"] == "2026-11-23T08:00:01Z"  # NOW + BACKOFF[0]
    assert answer.body["platform"]["code"] == "20000"
    assert answer.body["attempts"] == 1
    assert await env.credits() == 0
    assert await env.actions() == ["accept", "spend"]
    await env.assert_projection_is_the_fold()


async def test_a_queued_message_is_not_retried_before_its_backoff(env: Sending) -> None:
    env.fake.script(SEND_METHOD, transient())
    await env.send(one_time_body())

    env.later(BACKOFF[0] - 0.5)
    attempted = await env.run_outbox()

    assert attempted == 0
    assert len(env.fake.sends) == 1


async def test_a_queued_message_is_retried_after_its_backoff_and_sent(env: Sending) -> None:
    env.fake.script(SEND_METHOD, transient())
    queued = await env.send(one_time_body())

    env.later(BACKOFF[0])
    attempted = await env.run_outbox()

    assert attempted == 1
    assert len(env.fake.sends) == 2
    assert env.fake.sends[0].biz == env.fake.sends[1].biz
    answer = await env.message(queued.body["message_id"])
    assert (answer.body["status"], answer.body["attempts"]) == ("sent", 2)
    assert answer.body["sent_at"] == "2026-11-23T08:00:01Z"
    assert await env.credits() == 0
    assert await env.actions() == ["accept", "spend"]
    assert await env.run_outbox() == 0
    assert len(env.fake.sends) == 2
    await env.assert_projection_is_the_fold()


async def test_transient_failures_until_the_backoff_is_exhausted_fail_and_refund(
    env: Sending,
) -> None:
    env.fake.script(SEND_METHOD, *[transient()] * (len(BACKOFF) + 1))
    queued = await env.send(one_time_body())

    for delay in BACKOFF:
        env.later(delay)
        assert await env.run_outbox() == 1

    answer = await env.message(queued.body["message_id"])
    assert (answer.body["status"], answer.body["attempts"]) == ("failed", len(BACKOFF) + 1)
    assert len(env.fake.sends) == len(BACKOFF) + 1
    assert await env.credits() == 1
    assert await env.actions() == ["accept", "spend", "refund"]
    env.later(3600)
    assert await env.run_outbox() == 0
    assert len(env.fake.sends) == len(BACKOFF) + 1
    await env.assert_projection_is_the_fold()


@pytest.mark.parametrize(
    ("reply", "error"),
    [(hang(), "timeout"), (http_500(), "HTTP 500")],
    ids=["client timeout", "HTTP 500"],
)
async def test_no_answer_queues_the_message(env: Sending, reply: Reply, error: str) -> None:
    env.fake.script(SEND_METHOD, reply)

    answer = await env.send(one_time_body())

    assert (answer.status, answer.body["status"]) == (202, "queued")
    assert (answer.body["platform"], answer.body["last_error"]) == (None, error)
    assert len(env.fake.sends) == 1
    assert await env.credits() == 0
    await env.assert_projection_is_the_fold()


@pytest.mark.parametrize("reply", [badly_signed(), unsigned()], ids=["bad signature", "unsigned"])
async def test_an_unverifiable_10000_is_unknown_never_sent(env: Sending, reply: Reply) -> None:
    env.fake.script(SEND_METHOD, reply)

    answer = await env.send(one_time_body())

    assert answer.body["status"] == "unknown"
    assert answer.status == 202
    assert answer.body["sent_at"] is None
    assert answer.body["last_error"]
    row = await env.row(answer.body["message_id"])
    assert row.status == "unknown"
    assert await env.credits() == 0  # it may have been delivered: the credit stays spent
    assert await env.actions() == ["accept", "spend"]
    await env.assert_projection_is_the_fold()


async def test_an_unknown_message_is_never_retried(env: Sending) -> None:
    env.fake.script(SEND_METHOD, badly_signed())
    answer = await env.send(one_time_body())

    for _ in range(3):
        env.later(3600)
        assert await env.run_outbox() == 0

    assert len(env.fake.sends) == 1
    assert (await env.row(answer.body["message_id"])).status == "unknown"


async def test_get_message_of_a_queued_message_shows_the_retry_time(env: Sending) -> None:
    env.fake.script(SEND_METHOD, transient())
    queued = await env.send(one_time_body())

    answer = await env.message(queued.body["message_id"])

    assert answer.status == 200
    assert answer.body["status"] == "queued"
    assert answer.body["attempts"] == 1
    assert answer.body["platform"]["sub_code"] == "isp.unknow-error"
    assert answer.body["created_at"] == NOW.isoformat().replace("+00:00", "Z")
    assert answer.body["next_attempt_at"] == "2026-11-23T08:00:01Z"
    assert answer.body["sent_at"] is None


async def test_a_connection_error_queues_the_message(
    start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay
) -> None:
    unreachable = send_settings(tmp_path, fake, gateway_url="http://127.0.0.1:1/gateway.do")
    env = await start_sending(start_gateway, tmp_path, fake, unreachable)
    await env.give_credits(1)

    answer = await env.send(one_time_body())

    assert (answer.status, answer.body["status"]) == (202, "queued")
    assert answer.body["last_error"] == "ClientConnectorError"
    assert await env.credits() == 0


async def test_an_app_without_a_signing_key_fails_the_send_and_refunds(
    start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay
) -> None:
    keyless = send_settings(tmp_path, fake, app_private_key=None)
    env = await start_sending(start_gateway, tmp_path, fake, keyless)
    await env.give_credits(1)

    answer = await env.send(one_time_body())

    assert (answer.status, answer.body.get("status")) == (200, "failed"), answer.body
    assert "app_private_key" in answer.body["last_error"]
    assert fake.calls == []
    assert await env.credits() == 1  # nothing was sent: the credit is given back
    assert await env.actions() == ["accept", "spend", "refund"]
    await env.assert_projection_is_the_fold()
