"""``workcore_batch``: batch messages through TOP ``alibaba.ib.workcore.message.batchsendmsg``,
split by consent (ledger channel ``workcore``, template = ``action``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.platforms.top import WORKCORE_BATCH_SEND
from tests.server.channel_fixtures import (
    ACTION,
    THROTTLE_DELAY,
    Channels,
    running_channels,
    workcore_body,
)
from tests.server.conftest import StartGateway
from tests.server.fake_top import business_failure, error
from tests.server.send_fixtures import BACKOFF, new_key

SKIPPED = {"reason": "consent_required"}


@pytest.fixture
async def env(
    monkeypatch: pytest.MonkeyPatch, start_gateway: StartGateway, tmp_path: Path
) -> AsyncIterator[Channels]:
    async with running_channels(monkeypatch, start_gateway, tmp_path) as channels:
        yield channels


@pytest.fixture
async def mixed(env: Channels) -> Channels:
    """1001 and 1004 granted; 1002 granted then revoked; 1003 never asked."""
    for user in ("1001", "1002", "1004"):
        await env.consent("workcore", ACTION, user)
    env.later(1)
    await env.consent("workcore", ACTION, "1002", "revoked")
    return env


def batches(env: Channels) -> list[dict[str, Any]]:
    return [
        json.loads(call.params["batch_message_d_t_o"])
        for call in env.top_calls(WORKCORE_BATCH_SEND)
    ]


async def test_only_consenting_receivers_are_sent_and_the_others_listed(mixed: Channels) -> None:
    answer = await mixed.send(workcore_body())

    assert (answer.status, answer.body["status"]) == (200, "sent")
    assert answer.body["recipients"] == ["1001", "1004"]
    assert answer.body["skipped"] == [
        {"user_id": "1002", **SKIPPED},
        {"user_id": "1003", **SKIPPED},
    ]
    assert answer.body["user_id"] == "1001"
    assert answer.body["template_id"] == ACTION
    [call] = mixed.top_calls(WORKCORE_BATCH_SEND)
    assert list(json.loads(call.params["batch_message_d_t_o"]).items()) == [
        ("json_data", '{"order":"A-1001","count":2}'),
        ("resource_url", "https://work.example.com/orders/A-1001"),
        ("event_type", "account_receiver"),
        ("action", ACTION),
        ("receiver", '["1001","1004"]'),
        ("source", "iwork"),
        ("resource_id", "A-1001"),
        ("sender", 7),
    ]
    evidence = f"message:{answer.body['message_id']}"
    for user in ("1001", "1004"):
        assert (await mixed.ledger("workcore", ACTION, user))[-1] == ("spend", evidence)
    assert [a for a, _ in await mixed.ledger("workcore", ACTION, "1002")] == ["grant", "revoke"]
    assert await mixed.ledger("workcore", ACTION, "1003") == []
    stored = await mixed.message(answer.body["message_id"])
    assert stored.body == answer.body
    await mixed.assert_projection_is_the_fold()  # no projection for the never-asked 1003


async def test_with_no_consenting_receiver_nothing_is_sent(mixed: Channels) -> None:
    answer = await mixed.send(workcore_body(receivers=["1002", "1003", "1005"]))

    assert (answer.status, answer.code) == (403, "consent_required")
    assert mixed.top.received == []
    assert await mixed.message_count() == 0
    await mixed.assert_projection_is_the_fold()


async def test_consent_is_per_action(mixed: Channels) -> None:
    answer = await mixed.send(workcore_body(action="shift_changed"))

    assert (answer.status, answer.code) == (403, "consent_required")
    assert mixed.top.received == []


async def test_a_batch_of_only_consenting_receivers_skips_no_one(mixed: Channels) -> None:
    answer = await mixed.send(workcore_body(receivers=["1004", "1001"]))

    assert (answer.body["recipients"], answer.body["skipped"]) == (["1004", "1001"], [])
    assert batches(mixed)[0]["receiver"] == '["1004","1001"]'


async def test_optional_fields_left_out_are_not_sent(mixed: Channels) -> None:
    body = {
        "channel": "workcore_batch",
        "top_app": "shop",
        "action": ACTION,
        "receivers": ["1001"],
    }

    answer = await mixed.send(body)

    assert answer.body["status"] == "sent"
    assert batches(mixed) == [
        {"json_data": "{}", "resource_url": "", "action": ACTION, "receiver": '["1001"]'}
    ]


async def test_the_same_key_never_makes_a_second_call(mixed: Channels) -> None:
    key = new_key()
    first = await mixed.send(workcore_body(), key=key)

    replays = await asyncio.gather(*(mixed.send(workcore_body(), key=key) for _ in range(3)))

    assert [r.body for r in replays] == [first.body] * 3
    assert len(batches(mixed)) == 1
    conflict = await mixed.send(workcore_body(receivers=["1001"]), key=key)
    assert (conflict.status, conflict.code) == (409, "idempotency_conflict")
    assert len(batches(mixed)) == 1


async def test_a_refusal_fails_the_batch_and_refunds_each_receivers_spend(
    mixed: Channels,
) -> None:
    mixed.top.script(business_failure(error_code="500", error_msg="模板不存在", error_level="2"))

    answer = await mixed.send(workcore_body())

    assert (answer.status, answer.body["status"]) == (200, "failed")
    assert answer.body["platform"]["sub_code"] == "500"
    assert answer.body["platform"]["sub_msg"] == "模板不存在"
    evidence = f"message:{answer.body['message_id']}"
    for user in ("1001", "1004"):
        history = await mixed.ledger("workcore", ACTION, user)
        assert history[-2:] == [("spend", evidence), ("refund", evidence)]
    assert [a for a, _ in await mixed.ledger("workcore", ACTION, "1002")] == ["grant", "revoke"]
    await mixed.assert_projection_is_the_fold()


async def test_a_transient_answer_is_retried_to_the_same_receivers(mixed: Channels) -> None:
    mixed.top.script(error(15, "Remote service error", "isp.top-remote-connection-timeout"))
    answer = await mixed.send(workcore_body())
    assert (answer.status, answer.body["status"]) == (202, "queued")

    await mixed.restart()
    mixed.later(BACKOFF[0])
    assert await mixed.run_outbox() == 1

    assert [b["receiver"] for b in batches(mixed)] == ['["1001","1004"]'] * 2
    stored = await mixed.message(answer.body["message_id"])
    assert (stored.body["status"], stored.body["attempts"]) == ("sent", 2)
    assert stored.body["skipped"] == answer.body["skipped"]
    await mixed.assert_projection_is_the_fold()


async def test_a_throttled_batch_waits_the_throttle_delay(mixed: Channels) -> None:
    mixed.top.script(error(7, "App Call Limited"))

    answer = await mixed.send(workcore_body())

    assert answer.body["next_attempt_at"] == "2026-11-23T08:10:01Z"  # the grants took 1 s
    mixed.later(THROTTLE_DELAY - 1)
    assert await mixed.run_outbox() == 0
    mixed.later(1)
    assert await mixed.run_outbox() == 1
    assert len(batches(mixed)) == 2


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("no receivers", workcore_body(receivers=[]), "validation_failed", "receivers"),
    ("repeated receiver", workcore_body(receivers=["1001", "1001"]), "validation_failed", "repeat"),
    ("receiver not an id", workcore_body(receivers=["10 01"]), "validation_failed", "receivers.0"),
    (
        "receiver a number",
        {**workcore_body(), "receivers": [1001]},
        "validation_failed",
        "receivers.0",
    ),
    ("action not an id", workcore_body(action="#{}"), "validation_failed", "action"),
    (
        "nested json_data",
        workcore_body(json_data={"a": {"b": 1}}),
        "validation_failed",
        "json_data",
    ),
    ("sender a string", workcore_body(sender="7"), "validation_failed", "sender"),
    ("receiver given", workcore_body(receiver='["1001"]'), "validation_failed", "receiver"),
    ("unconfigured top_app", workcore_body(top_app="other"), "unknown_top_app", "other"),
]


@pytest.mark.parametrize(
    ("body", "code", "where"), [i[1:] for i in INVALID], ids=[i[0] for i in INVALID]
)
async def test_an_invalid_batch_is_refused_before_anything(
    mixed: Channels, body: dict[str, Any], code: str, where: str
) -> None:
    answer = await mixed.send(body)

    assert (answer.status, answer.code) == (422, code)
    assert where in answer.body["error"]["message"]
    assert mixed.top.received == []
    assert await mixed.message_count() == 0
