"""A NUL character gets the same answer on every store: refused as input, never a 503.

PostgreSQL keeps no NUL in text while SQLite does, so a NUL that reached the store would be
stored on one backend and fail for good (as ``storage_unavailable``) on the other. It is refused
where it enters instead: in a notification's form (``malformed``) and in a JSON body
(``invalid_json``). Free text without NUL, control characters included, is stored and read back
intact on both. Each test runs on SQLite and on PostgreSQL (a schema of its own).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server.platforms.calls import CallOutcome, CallResult
from server.settings import StorageSettings
from tests.oracle import form_body
from tests.server.api_client import (
    ONE_TIME,
    USER,
    Api,
    api_credentials,
    api_settings,
    success_report,
)
from tests.server.conftest import APP_ID, StartGateway
from tests.server.notifications import message_fields, post, signed, trade_fields


@pytest.fixture
async def api(store_url: str, start_gateway: StartGateway, tmp_path: Path) -> Api:
    """(``store_url`` first: its schema is dropped only after the gateway has closed.)"""
    settings = api_settings(tmp_path)
    storage = StorageSettings(url=store_url, busy_timeout_ms=2000)
    settings = settings.model_copy(update={"storage": storage})
    return Api(await start_gateway(settings, credentials=api_credentials(settings)))


async def stored_nothing(api: Api) -> bool:
    store = api.store
    return (
        await store.count_notifications() == 0
        and await store.consent_events(APP_ID) == []
        and await store.message_counts() == {}
    )


NOTIFICATIONS = {
    "notify_id": trade_fields(notify_id="a1b2\x00c3d4"),
    "a free-text field": trade_fields(subject="语雀\x00空间"),
    "the kind": message_fields(msg_method="alipay.merchant\x00.tradecomplain.changed"),
    "biz_content": message_fields(biz_content='{"complain_event_id":"1\x002"}'),
}


@pytest.mark.parametrize("where", NOTIFICATIONS)
async def test_a_signed_notification_with_a_nul_is_malformed_and_stores_nothing(
    api: Api, where: str
) -> None:
    status, code, body = await post(api.gateway.client, signed(NOTIFICATIONS[where]))

    assert (status, code, body) == (400, "malformed", b"fail")
    assert await stored_nothing(api)


async def test_a_raw_zero_byte_in_the_body_is_malformed(api: Api) -> None:
    body = form_body(signed(trade_fields()), "utf-8").replace(b"&subject=", b"&subject=\x00")

    status, code, _ = await post(api.gateway.client, {}, body=body)

    assert (status, code) == (400, "malformed")
    assert await stored_nothing(api)


def with_nul(path: tuple[str, ...], body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with a NUL inserted into the string at ``path`` (a list index as a digit)."""
    target: Any = body
    for step in path[:-1]:
        target = target[int(step)] if isinstance(target, list) else target[step]
    last: Any = int(path[-1]) if isinstance(target, list) else path[-1]
    target[last] = f"{target[last][:2]}\x00{target[last][2:]}"
    return body


JSON_BODIES = {
    "opt-in evidence": (
        "PUT",
        f"/v1/apps/{APP_ID}/users/{USER}/consents/jym_push/{ONE_TIME}",
        with_nul(("evidence",), {"status": "granted", "evidence": "app toggle on"}),
    ),
    "a reported template id": (
        "POST",
        f"/v1/apps/{APP_ID}/users/{USER}/subscribe-results",
        with_nul(("result", "currentSubscribedEntityIds", "0"), success_report(ONE_TIME)),
    ),
    "a looked-up user id": (
        "POST",
        f"/v1/apps/{APP_ID}/subscriptions:lookup",
        with_nul(("user_ids", "0"), {"template_id": ONE_TIME, "user_ids": [USER]}),
    ),
    "a send's template data": (
        "POST",
        f"/v1/apps/{APP_ID}/messages",
        with_nul(
            ("data", "keyword1", "value"),
            {
                "channel": "mini_template",
                "user_id": USER,
                "template_id": ONE_TIME,
                "data": {"keyword1": {"value": "order 42"}},
            },
        ),
    ),
    "an object key": (
        "PUT",
        f"/v1/apps/{APP_ID}/users/{USER}/consents/jym_push/{ONE_TIME}",
        {"status": "granted", "evidence": "ok", "ex\x00tra": "x"},
    ),
}


@pytest.mark.parametrize("where", JSON_BODIES)
async def test_a_json_body_with_a_nul_is_invalid_json_and_stores_nothing(
    api: Api, where: str
) -> None:
    method, path, body = JSON_BODIES[where]

    answer = await api.request(method, path, json_body=body, headers={"Idempotency-Key": "k-1"})

    assert (answer.status, answer.code) == (400, "invalid_json")
    assert "NUL" in answer.body["error"]["message"]
    assert await stored_nothing(api)


async def test_a_nul_in_a_path_identifier_is_a_validation_failure(api: Api) -> None:
    answer = await api.request("GET", f"/v1/apps/{APP_ID}/users/20881%00/subscriptions")

    assert (answer.status, answer.code) == (422, "validation_failed")


async def test_free_text_without_nul_is_stored_and_read_back_intact(api: Api) -> None:
    evidence = "".join(map(chr, range(1, 32))) + ' "quoted" \\ \u2028 \ufffe \uffff 😀 语雀'
    put = await api.put_consent("jym_push", ONE_TIME, {"status": "granted", "evidence": evidence})
    assert put.status == 200, put.text

    history = await api.history(ONE_TIME, channel="jym_push")

    assert [event["evidence"] for event in history.body["events"]] == [evidence]
    assert json.loads(history.text)["events"][0]["evidence"] == evidence


def test_a_platform_answer_with_a_nul_is_kept_with_a_replacement_character() -> None:
    result = CallResult(CallOutcome.REJECTED, code="40004", sub_msg="bad\x00 user", msg=None)

    assert (result.code, result.sub_msg, result.msg) == ("40004", "bad\ufffd user", None)
