"""GET /v1/apps/{app_id}/events: the feed of what Subgate received and changed, on both stores.

Events come from real notifications posted through the gateway (signed by the official SDK) and
consent reports through the API; the feed is read over HTTP from a running Subgate. Each test runs
on SQLite and on PostgreSQL (a schema of its own).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.api.keys import FEED
from server.appkeys import STORE
from server.events.cursor import encode_cursor
from server.events.keys import EVENT_PAYLOADS
from server.events.payloads import encode, parse_event_id
from server.settings import StorageSettings
from storage.models import START
from tests.server.api_client import (
    ADMIN_TOKEN,
    LONG_TERM,
    ONE_TIME,
    OTHER_APP_TOKEN,
    READER_TOKEN,
    SEND_ONLY_TOKEN,
    USER,
    Answer,
    Api,
    api_credentials,
    api_settings,
    success_report,
)
from tests.server.conftest import APP_ID, OTHER_APP_ID, StartGateway
from tests.server.guarded import serve_guarded, until
from tests.server.notifications import life_account_fields, message_fields, post, signed
from tests.server.notifications import trade_fields as trade
from tests.server.test_openapi import documented_codes, validator
from tests.storage.event_log import settled

FOLLOWER = "2088000000000077"
StartApi = Callable[[], Awaitable[Api]]


@pytest.fixture
async def start(store_url: str, start_gateway: StartGateway, tmp_path: Path) -> StartApi:
    """Start (or restart) Subgate on the store; ``store_url`` comes first so that its schema is
    dropped only after every gateway has closed."""

    async def started() -> Api:
        settings = api_settings(tmp_path)
        storage = StorageSettings(url=store_url, busy_timeout_ms=2000)
        settings = settings.model_copy(update={"storage": storage})
        return Api(await start_gateway(settings, credentials=api_credentials(settings)))

    return started


@pytest.fixture
async def api(start: StartApi) -> Api:
    return await start()


async def feed(api: Api, app: str = APP_ID, **params: Any) -> Answer:
    query = {name: str(value) for name, value in params.items()}
    return await api.request("GET", f"/v1/apps/{app}/events", params=query)


async def read(api: Api, **params: Any) -> dict[str, Any]:
    """The feed's answer once what was written so far is settled (on PostgreSQL another
    session's open transaction may hold events back a moment: tests/storage/event_log.py)."""
    await settled(api.gateway.app[STORE])
    answer = await feed(api, **params)
    assert answer.status == 200, answer.text
    body: dict[str, Any] = answer.body
    return body


async def notify(api: Api, fields: dict[str, str]) -> None:
    status, code, body = await post(api.gateway.client, signed(fields))
    assert status == 200, (code, body)


async def follow(api: Api, user: str) -> None:
    """A life-account follow as Alipay sends it: GBK, signed with sign_type (V2)."""
    fields = signed(life_account_fields("follow", user), rule="V2", charset="gbk")
    status, code, body = await post(api.gateway.client, fields, charset="gbk", header_charset="GBK")
    assert status == 200, (code, body)


async def report(api: Api, *templates: str, user: str = USER) -> None:
    answer = await api.report(success_report(*templates), user=user)
    assert answer.status == 200, answer.text


def types_of(page: dict[str, Any]) -> list[str]:
    return [event["type"] for event in page["events"]]


async def test_notifications_and_consent_changes_come_oldest_first_with_the_push_payload(
    api: Api,
) -> None:
    trade_fields = trade(out_trade_no="order-1")
    await notify(api, trade_fields)
    await notify(api, trade_fields)  # Alipay's retry: no second event
    await report(api, ONE_TIME)
    await follow(api, FOLLOWER)

    page = await read(api)

    assert types_of(page) == [
        "notification.received",
        "consent.changed",
        "notification.received",
        "consent.changed",
    ]
    trade_event, report_event, follow_event, follow_consent = page["events"]
    assert trade_event["data"]["notify_id"] == trade_fields["notify_id"]
    assert trade_event["data"]["kind"] == "trade_status_sync"
    assert trade_event["data"]["fields"]["out_trade_no"] == "order-1"
    assert "sign" not in trade_event["data"]["fields"]
    assert trade_event["timestamp"].endswith("Z")
    assert {k: report_event["data"][k] for k in ("user_id", "template_id", "status")} == {
        "user_id": USER,
        "template_id": ONE_TIME,
        "status": "subscribed",
    }
    assert (report_event["data"]["can_send"], report_event["data"]["credits"]) == (True, 1)
    assert follow_event["data"]["biz_content"]["EventType"] == "follow"  # GBK XML, parsed
    assert follow_consent["data"]["channel"] == "life_account"
    assert follow_consent["data"]["user_id"] == FOLLOWER
    for event in page["events"]:  # the same id and payload as the push sends
        stored = await api.store.event_by_id(parse_event_id(event["id"]) or 0)
        assert stored is not None
        pushed = api.gateway.app[EVENT_PAYLOADS].body(stored)
        assert encode({k: event[k] for k in ("type", "timestamp", "data")}) == pushed


async def test_paging_with_next_cursor_has_no_gap_and_no_repeat_and_survives_a_restart(
    api: Api, start: StartApi
) -> None:
    for number in range(5):
        await notify(api, trade(out_trade_no=f"order-{number}"))
    await report(api, ONE_TIME, LONG_TERM)
    whole = await read(api, limit=500)
    assert len(whole["events"]) == 7  # 5 notifications, 2 consent keys changed

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(4):
        page = await read(api, limit=2, **({"after": cursor} if cursor else {}))
        assert len(page["events"]) == min(2, 7 - len(seen))
        seen += [event["id"] for event in page["events"]]
        cursor = page["next_cursor"]
    assert seen == [event["id"] for event in whole["events"]]
    assert cursor == whole["next_cursor"]

    restarted = await start()
    assert await read(restarted, after=cursor) == {"events": [], "next_cursor": cursor}
    await notify(restarted, trade(out_trade_no="order-after-restart"))
    newer = await read(restarted, after=cursor)
    assert [e["data"]["fields"]["out_trade_no"] for e in newer["events"]] == ["order-after-restart"]
    assert newer["next_cursor"] != cursor


async def test_an_empty_log_answers_the_start_and_the_start_reads_everything_later(
    api: Api,
) -> None:
    start = encode_cursor(START)

    assert await read(api) == {"events": [], "next_cursor": start}
    assert await read(api, after=start) == {"events": [], "next_cursor": start}
    await notify(api, trade())
    assert types_of(await read(api, after=start)) == ["notification.received"]


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ("consent.*", ["consent.changed", "consent.changed"]),
        ("notification.received", ["notification.received", "notification.received"]),
        ("*.changed,notification.*", ["notification.received", "consent.changed"] * 2),
        ("*", ["notification.received", "consent.changed"] * 2),
    ],
)
async def test_types_globs_choose_the_types(api: Api, types: str, expected: list[str]) -> None:
    await notify(api, trade())
    await report(api, ONE_TIME)
    await notify(api, message_fields())
    await report(api, LONG_TERM)

    page = await read(api, types=types)

    assert types_of(page) == expected


async def test_a_filtered_page_reads_on_from_its_last_event(api: Api) -> None:
    await report(api, ONE_TIME)
    await notify(api, trade())
    first = await read(api, types="consent.changed")
    await report(api, LONG_TERM)

    page = await read(api, types="consent.changed", after=first["next_cursor"])

    assert [e["data"]["template_id"] for e in page["events"]] == [LONG_TERM]


async def test_each_app_reads_only_its_own_events_and_other_tokens_are_refused(api: Api) -> None:
    await notify(api, trade(OTHER_APP_ID, out_trade_no="theirs"))
    await notify(api, trade(out_trade_no="ours"))

    ours = await read(api)
    theirs = await api.as_token(OTHER_APP_TOKEN).request("GET", f"/v1/apps/{OTHER_APP_ID}/events")
    refused = await feed(api.as_token(OTHER_APP_TOKEN))
    without_read = await feed(api.as_token(SEND_ONLY_TOKEN))
    reader = await feed(api.as_token(READER_TOKEN))

    assert [e["data"]["fields"]["out_trade_no"] for e in ours["events"]] == ["ours"]
    assert [e["data"]["fields"]["out_trade_no"] for e in theirs.body["events"]] == ["theirs"]
    assert (refused.status, refused.code) == (403, "forbidden")
    assert (without_read.status, without_read.code) == (403, "forbidden")
    assert reader.status == 200 and reader.body == ours
    assert "theirs" not in refused.text


def _cursor_text(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


BAD_PARAMETERS = [
    ({"after": "not-a-cursor"}, "invalid_cursor"),
    ({"after": ""}, "invalid_cursor"),
    ({"after": _cursor_text("2.0.5")}, "invalid_cursor"),  # another version's
    ({"after": _cursor_text("1.0.-5")}, "invalid_cursor"),
    ({"after": "A" * 65}, "invalid_cursor"),
    ({"types": "trade.*"}, "unknown_event_type"),
    ({"types": "consent.changed,refund.*"}, "unknown_event_type"),
    ({"types": ""}, "unknown_event_type"),
    ({"limit": "0"}, "invalid_parameter"),
    ({"limit": "501"}, "invalid_parameter"),
    ({"limit": "1.5"}, "invalid_parameter"),
    ({"limit": "-1"}, "invalid_parameter"),
    ({"limit": "1_0"}, "invalid_parameter"),
    ({"limit": "١٠"}, "invalid_parameter"),  # Arabic-Indic digits
    ({"wait": "31"}, "invalid_parameter"),
    ({"wait": "-1"}, "invalid_parameter"),
    ({"wait": "nan"}, "invalid_parameter"),
    ({"wait": "inf"}, "invalid_parameter"),
    ({"wait": "1e1"}, "invalid_parameter"),
]


@pytest.mark.parametrize(("params", "code"), BAD_PARAMETERS, ids=[c for _, c in BAD_PARAMETERS])
async def test_a_bad_parameter_is_a_400_with_its_code(
    api: Api, params: dict[str, str], code: str
) -> None:
    answer = await feed(api, **params)

    assert (answer.status, answer.code) == (400, code), answer.text
    [name] = params
    assert name in answer.body["error"]["message"]  # says which parameter


async def test_a_long_poll_is_answered_by_an_event_that_arrives_while_it_waits(api: Api) -> None:
    caught_up = (await read(api))["next_cursor"]
    feed_of = api.gateway.app[FEED]
    began = time.monotonic()
    waiting = asyncio.create_task(read(api, after=caught_up, wait=20, types="consent.changed"))
    await until(lambda: feed_of.waiting == 1, "the feed request waits")

    await notify(api, trade(OTHER_APP_ID))  # another app's: the log moves, not this feed
    await notify(api, trade())  # this app's, of a type not asked for
    await report(api, ONE_TIME)
    page = await waiting

    assert types_of(page) == ["consent.changed"]
    assert page["events"][0]["data"]["template_id"] == ONE_TIME
    assert time.monotonic() - began < 15
    assert feed_of.waiting == 0


async def test_a_long_poll_with_nothing_new_ends_empty_at_its_time_with_the_same_cursor(
    api: Api,
) -> None:
    await notify(api, trade())
    caught_up = (await read(api))["next_cursor"]
    began = time.monotonic()

    page = await read(api, after=caught_up, wait=0.6)

    assert page == {"events": [], "next_cursor": caught_up}
    assert 0.6 <= time.monotonic() - began < 5


async def test_a_long_poll_returns_at_once_when_there_is_already_something(api: Api) -> None:
    await notify(api, trade())
    began = time.monotonic()

    page = await read(api, wait=30)

    assert types_of(page) == ["notification.received"]
    assert time.monotonic() - began < 5


async def test_a_client_hanging_up_mid_wait_leaves_no_waiter_behind(
    store_url: str, tmp_path: Path
) -> None:
    """Served as run.py serves it: aiohttp does not cancel a handler whose client went away."""
    settings = api_settings(tmp_path)
    settings = settings.model_copy(update={"storage": StorageSettings(url=store_url)})
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async with serve_guarded(settings) as served, aiohttp.ClientSession() as session:
        feed_of = served.app[FEED]
        url = f"{served.url}/v1/apps/{APP_ID}/events"
        request = asyncio.create_task(session.get(url, params={"wait": "30"}, headers=headers))
        await until(lambda: feed_of.waiting == 1, "the feed request waits")
        assert served.metrics.registry.get_sample_value("subgate_feed_long_polls") == 1
        request.cancel()
        await until(lambda: feed_of.waiting == 0, "the hung-up request stops waiting")

        assert served.metrics.registry.get_sample_value("subgate_feed_long_polls") == 0
        async with session.get(url, headers=headers) as answer:  # and the service answers on
            assert (answer.status, await answer.json()) == (
                200,
                {"events": [], "next_cursor": encode_cursor(START)},
            )


async def test_real_answers_of_the_feed_validate_against_the_document(api: Api) -> None:
    document = (await api.as_token(None).request("GET", "/openapi.json")).body
    responses = document["paths"]["/v1/apps/{app_id}/events"]["get"]["responses"]
    await notify(api, trade())
    await report(api, ONE_TIME)

    answers = [
        await feed(api),
        await feed(api, types="nothing.*"),
        await feed(api, limit="0"),
        await feed(api, after="x"),
        await feed(api.as_token(OTHER_APP_TOKEN)),
        await feed(api, app="2021009999999999"),
    ]

    assert [a.status for a in answers] == [200, 400, 400, 400, 403, 404]
    for answer in answers:
        response = responses[str(answer.status)]
        schema = response["content"]["application/json"]["schema"]
        validator(document, schema).validate(answer.body)
        assert answer.status == 200 or answer.code in documented_codes(response)
