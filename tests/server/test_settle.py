"""POST /v1/apps/{app_id}/messages/{message_id}:settle, end to end on both stores: a real Subgate
sends through the fake Alipay, whose unsigned answer leaves the message ``unknown``; a person
then settles it over HTTP. Both verdicts (the credit, the ledger's evidence with who and why,
the message, the events), every refusal, concurrent settles, and the answers against
/openapi.json."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from server.settings import settings_from_mapping
from tests.server.conftest import APP_ID, StartGateway, app_config
from tests.server.fake_alipay import SEND_METHOD, FakeAlipay, unsigned
from tests.server.send_fixtures import (
    LONG_TERM,
    ONE_TIME,
    OUTBOX,
    TEMPLATES,
    TOKEN,
    USER,
    Answer,
    Sending,
    long_term_body,
    one_time_body,
    start_sending,
)
from tests.server.test_openapi import documented_codes, validator

READ_WRITE_TOKEN = "read-write-0123456789abcdef"  # no send scope
TOKENS: list[dict[str, Any]] = [
    {"token": TOKEN, "apps": ["*"], "scopes": ["read", "write", "send"]},
    {"token": READ_WRITE_TOKEN, "apps": [APP_ID], "scopes": ["read", "write"]},
]
WHO = f"token:{hashlib.sha256(TOKEN.encode()).hexdigest()[:8]}"
REASON = "the user says the notice never arrived (ticket 4711)"
SETTLE = "/v1/apps/{app_id}/messages/{message_id}:settle"


@pytest.fixture
async def env(
    store_url: str, start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay
) -> Sending:
    """A gateway on the store (``store_url`` first: its schema is dropped after the gateway
    closes) sending through ``fake``."""
    config = app_config(APP_ID, templates=TEMPLATES, gateway_url=fake.url)
    data = {
        "storage": {"url": store_url, "busy_timeout_ms": 2000},
        "apps": [config],
        "tokens": TOKENS,
        "outbox": OUTBOX,
    }
    settings = settings_from_mapping(data, base_dir=tmp_path)
    return await start_sending(start_gateway, tmp_path, fake, settings)


async def unknown_send(env: Sending, body: dict[str, Any] | None = None) -> str:
    """A send the platform answered unsigned: ``unknown``, its credit spent. Its message id."""
    template = (body or {}).get("template_id", ONE_TIME)
    await env.give_credits(1, template=template)
    env.fake.script(SEND_METHOD, unsigned())
    answer = await env.send(body or one_time_body())
    assert (answer.status, answer.body["status"]) == (202, "unknown"), answer.body
    return str(answer.body["message_id"])


async def settle(
    env: Sending, message_id: str, body: Any, token: str = TOKEN, app: str = APP_ID
) -> Answer:
    path = SETTLE.format(app_id=app, message_id=message_id)
    if token == TOKEN:
        return await env.request("POST", path, body)
    return await env.request("POST", path, body, {"Authorization": f"Bearer {token}"})


async def subscription(env: Sending, template: str = ONE_TIME) -> dict[str, Any]:
    answer = await env.request("GET", f"/v1/apps/{APP_ID}/users/{USER}/subscriptions/{template}")
    assert answer.status == 200
    body: dict[str, Any] = answer.body
    return body


async def history(env: Sending, template: str = ONE_TIME) -> list[dict[str, Any]]:
    path = f"/v1/apps/{APP_ID}/users/{USER}/subscriptions/{template}/history"
    answer = await env.request("GET", path)
    assert answer.status == 200
    events: list[dict[str, Any]] = answer.body["events"]
    return events


async def feed(env: Sending, wanted: int) -> list[dict[str, Any]]:
    """The app's message and consent events, once ``wanted`` of them are readable."""
    path = f"/v1/apps/{APP_ID}/events?types=message.*,consent.*&limit=500"
    for _ in range(200):  # PostgreSQL shows an event once every older transaction has ended
        answer = await env.request("GET", path)
        assert answer.status == 200
        events: list[dict[str, Any]] = answer.body["events"]
        if len(events) >= wanted:
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"the feed never showed {wanted} events")


@pytest.mark.parametrize(
    ("outcome", "status", "action", "credits", "can_send"),
    [
        ("not_delivered", "settled_not_delivered", "refund", 1, True),
        ("delivered", "settled_delivered", "confirm", 0, False),
    ],
)
async def test_a_settle_decides_the_credit_and_keeps_who_and_why(
    env: Sending, outcome: str, status: str, action: str, credits: int, can_send: bool
) -> None:
    message_id = await unknown_send(env)
    assert (await subscription(env))["credits"] == 0

    answer = await settle(env, message_id, {"outcome": outcome, "reason": f"  {REASON} "})

    assert (answer.status, answer.body["status"]) == (200, status)
    assert answer.body["settlement"] == {
        "outcome": outcome,
        "reason": REASON,
        "settled_by": WHO,
        "settled_at": "2026-11-23T08:00:00Z",
    }
    assert TOKEN not in str(answer.body)
    assert (await env.message(message_id)).body == answer.body
    state = await subscription(env)
    assert (state["credits"], state["can_send"], state["last_source"]) == (
        credits,
        can_send,
        "operator",
    )
    events = await history(env)
    assert [(e["action"], e["source"]) for e in events] == [
        ("accept", "client_report"),
        ("spend", "send"),
        (action, "operator"),
    ]
    assert events[-1]["evidence"] == f"message:{message_id} settled {outcome} by {WHO}: {REASON}"
    await env.assert_projection_is_the_fold()


async def test_a_settle_hands_on_one_message_update_and_the_consent_change(env: Sending) -> None:
    message_id = await unknown_send(env)
    before = len(await feed(env, 3))  # accept, spend, unknown

    await settle(env, message_id, {"outcome": "not_delivered", "reason": REASON})

    written = (await feed(env, before + 2))[before:]
    assert [e["type"] for e in written] == ["message.updated", "consent.changed"]
    updated, changed = (e["data"] for e in written)
    assert (updated["message_id"], updated["status"], updated["settlement"]) == (
        message_id,
        "settled_not_delivered",
        {"reason": REASON, "settled_by": WHO},
    )
    assert (changed["action"], changed["source"], changed["credits"], changed["can_send"]) == (
        "refund",
        "operator",
        1,
        True,
    )


async def test_the_refunded_credit_sends_the_next_message(env: Sending) -> None:
    message_id = await unknown_send(env)
    await settle(env, message_id, {"outcome": "not_delivered", "reason": REASON})

    answer = await env.send(one_time_body())

    assert (answer.status, answer.body["status"]) == (200, "sent")
    assert (await subscription(env))["credits"] == 0


async def test_a_long_term_send_has_nothing_to_refund(env: Sending) -> None:
    message_id = await unknown_send(env, long_term_body())

    answer = await settle(env, message_id, {"outcome": "not_delivered", "reason": REASON})

    assert (answer.status, answer.body["status"]) == (200, "settled_not_delivered")
    state = await subscription(env, LONG_TERM)
    assert (state["status"], state["credits"], state["can_send"]) == ("subscribed", 0, True)
    assert [e["action"] for e in await history(env, LONG_TERM)][-1] == "refund"


async def test_settling_twice_answers_409_and_changes_nothing(env: Sending) -> None:
    message_id = await unknown_send(env)
    first = await settle(env, message_id, {"outcome": "not_delivered", "reason": REASON})

    again = await settle(env, message_id, {"outcome": "delivered", "reason": "no, it did"})

    assert (again.status, again.code) == (409, "message_not_unknown")
    assert "settled_not_delivered" in again.body["error"]["message"]
    assert (await env.message(message_id)).body == first.body
    assert (await subscription(env))["credits"] == 1
    assert len(await history(env)) == 3


async def test_a_message_that_is_not_unknown_answers_409(env: Sending) -> None:
    await env.give_credits(1)
    sent = await env.send(one_time_body())
    assert sent.body["status"] == "sent"

    answer = await settle(env, sent.body["message_id"], {"outcome": "not_delivered", "reason": "x"})

    assert (answer.status, answer.code) == (409, "message_not_unknown")
    assert (await env.message(sent.body["message_id"])).body["status"] == "sent"
    assert (await subscription(env))["credits"] == 0


async def test_an_unknown_message_id_answers_404(env: Sending) -> None:
    answer = await settle(
        env, "msg_000000000000000000000000", {"outcome": "delivered", "reason": "x"}
    )

    assert (answer.status, answer.code) == (404, "message_not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"outcome": "delivered"},
        {"reason": REASON},
        {"outcome": "maybe", "reason": REASON},
        {"outcome": "delivered", "reason": "   "},
        {"outcome": "delivered", "reason": "two\nlines"},
        {"outcome": "delivered", "reason": "x" * 501},
        {"outcome": "delivered", "reason": REASON, "by": "someone else"},
        ["delivered", REASON],
    ],
    ids=["no-reason", "no-outcome", "bad-outcome", "blank", "newline", "long", "extra", "list"],
)
async def test_a_bad_body_answers_422_and_changes_nothing(env: Sending, body: Any) -> None:
    message_id = await unknown_send(env)

    answer = await settle(env, message_id, body)

    assert (answer.status, answer.code) == (422, "validation_failed")
    assert (await env.message(message_id)).body["status"] == "unknown"
    assert (await subscription(env))["credits"] == 0


async def test_a_token_without_the_send_scope_is_forbidden(env: Sending) -> None:
    message_id = await unknown_send(env)

    answer = await settle(
        env, message_id, {"outcome": "not_delivered", "reason": REASON}, READ_WRITE_TOKEN
    )

    assert (answer.status, answer.code) == (403, "forbidden")
    assert (await env.message(message_id)).body["status"] == "unknown"


async def test_concurrent_settles_refund_at_most_once(env: Sending) -> None:
    message_id = await unknown_send(env)
    bodies = [{"outcome": "not_delivered", "reason": f"try {i}"} for i in range(6)]

    answers = await asyncio.gather(*(settle(env, message_id, body) for body in bodies))

    assert sorted(a.status for a in answers) == [200] + [409] * 5
    assert (await subscription(env))["credits"] == 1
    assert [e["action"] for e in await history(env)] == ["accept", "spend", "refund"]
    await env.assert_projection_is_the_fold()


async def test_the_answers_are_as_openapi_json_documents_them(env: Sending) -> None:
    document = (await env.request("GET", "/openapi.json")).body
    operation = document["paths"][SETTLE]["post"]
    assert operation["description"].startswith("Needs a token with the `send` scope")
    message_id = await unknown_send(env)
    answers = [
        await settle(env, message_id, {"outcome": "delivered", "reason": REASON}),
        await settle(env, message_id, {"outcome": "delivered", "reason": REASON}),
        await settle(env, "msg_none", {"outcome": "delivered", "reason": REASON}),
        await settle(env, message_id, {"outcome": "lost"}),
    ]

    assert [a.status for a in answers] == [200, 409, 404, 422]
    for answer in answers:
        documented = operation["responses"][str(answer.status)]
        schema = documented["content"]["application/json"]["schema"]
        validator(document, schema).validate(answer.body)
        if answer.code is not None:
            assert answer.code in documented_codes(documented)
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    validator(document, body_schema).validate({"outcome": "not_delivered", "reason": REASON})
