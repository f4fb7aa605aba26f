"""Operating the push over /v1: each destination's state, its deliveries with every attempt,
replaying one delivery and a whole window; who may see which destination; no secret in any answer.

Subgate runs in-process on 127.0.0.1 with its delivery workers in the background, pushing to real
receivers; its clock is the test's (a failed delivery is retried only when the test moves it).
Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiohttp import web

from server.settings import Settings, settings_from_mapping
from tests.server.api_client import (
    ONE_TIME,
    OTHER_APP_TOKEN,
    READER_TOKEN,
    SEND_ONLY_TOKEN,
    TEMPLATES,
    TOKENS,
    WRITER_TOKEN,
    Answer,
    Api,
    api_credentials,
    success_report,
)
from tests.server.conftest import APP_ID, NOW, OTHER_APP_ID, StartGateway, app_config
from tests.server.delivery_fixtures import SECRET, destination, eventually
from tests.server.notifications import post, signed, trade_fields
from tests.server.receiver import Received, Receiver, receiving
from tests.server.test_openapi import documented_codes, validator

PASSWORD = "hunter2-hook-password"
QUERY_TOKEN = "query-token-0123456789"
GIVE_UP_SECONDS = 60
REPLAY_ONE = "/v1/destinations/{name}/deliveries/{event_id}:replay"
REPLAY_WINDOW = "/v1/destinations/{name}:replay"


@dataclass
class Receivers:
    orders: Receiver  # APP_ID's notifications; refuses the orders named in ``refused``
    audit: Receiver  # every event of every app
    refused: set[str]


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    async with receiving() as orders, receiving() as audit:
        refused: set[str] = set()

        async def answer(request: web.Request, received: Received) -> web.StreamResponse:
            order = received.payload["data"].get("fields", {}).get("out_trade_no")
            return web.Response(status=500 if order in refused else 204)

        orders.answer = answer
        yield Receivers(orders, audit, refused)


def with_credentials(url: str) -> str:
    return url.replace("://", f"://hookuser:{PASSWORD}@") + f"?token={QUERY_TOKEN}"


def operating_settings(
    tmp_path: Path, store_url: str, receivers: Receivers, *, with_orders: bool = True
) -> Settings:
    orders = destination(
        with_credentials(receivers.orders.url),
        "orders",
        apps=[APP_ID],
        events=["notification.received"],
        kinds=["trade_*"],
        retry_initial_seconds=1,
        retry_max_seconds=1,
        give_up_after_seconds=GIVE_UP_SECONDS,
        poll_seconds=0.05,
    )
    audit = destination(receivers.audit.url, "audit", poll_seconds=0.05)
    data: dict[str, Any] = {
        "storage": {"url": store_url, "busy_timeout_ms": 2000},
        "apps": [app_config(APP_ID, templates=TEMPLATES), app_config(OTHER_APP_ID)],
        "tokens": TOKENS,
        "destinations": [orders, audit] if with_orders else [audit],
    }
    return settings_from_mapping(data, base_dir=tmp_path)


class StartApi(Protocol):
    async def __call__(self, *, with_orders: bool = True) -> Api: ...


@pytest.fixture
async def start(
    store_url: str, start_gateway: StartGateway, tmp_path: Path, receivers: Receivers
) -> StartApi:
    """(``store_url`` first: its schema is dropped only after every gateway has closed.)"""

    async def started(*, with_orders: bool = True) -> Api:
        settings = operating_settings(tmp_path, store_url, receivers, with_orders=with_orders)
        credentials = api_credentials(settings)
        return Api(await start_gateway(settings, credentials=credentials))

    return started


@pytest.fixture
async def api(start: StartApi) -> Api:
    return await start()


async def notify(api: Api, order: str, app: str = APP_ID) -> str:
    fields = signed(trade_fields(app, when=api.clock.now, out_trade_no=order))
    status, code, _ = await post(api.gateway.client, fields)
    assert status == 200, code
    return fields["notify_id"]


async def deliveries(api: Api, name: str = "orders", **params: Any) -> Answer:
    query = {key: str(value) for key, value in params.items()}
    return await api.request("GET", f"/v1/destinations/{name}/deliveries", params=query)


async def until_deliveries(
    api: Api, status: str, count: int, name: str = "orders"
) -> list[dict[str, Any]]:
    """Wait until the destination has ``count`` deliveries in ``status``; them."""
    found: list[dict[str, Any]] = []

    async def there() -> bool:
        answer = await deliveries(api, name, status=status, limit=100)
        found[:] = answer.body["deliveries"]
        return len(found) == count

    await eventually(there)
    return found


async def replay(api: Api, name: str, event_id: str) -> Answer:
    return await api.request("POST", f"/v1/destinations/{name}/deliveries/{event_id}:replay")


async def replay_window(api: Api, name: str, body: Any) -> Answer:
    return await api.request("POST", f"/v1/destinations/{name}:replay", json_body=body)


def no_secret_in(answer: Answer) -> bool:
    return all(s not in answer.text for s in (PASSWORD, QUERY_TOKEN, SECRET[6:], "hookuser"))


async def test_each_destination_is_listed_with_its_filters_and_state_and_no_secret(
    api: Api, receivers: Receivers
) -> None:
    receivers.refused.add("broken")
    await notify(api, "fine")
    await notify(api, "broken")
    await until_deliveries(api, "failing", 1)
    await until_deliveries(api, "delivered", 2, name="audit")  # its verdicts kept, not only sent
    api.later(seconds=90)

    answer = await api.request("GET", "/v1/destinations")

    assert answer.status == 200, answer.text
    orders, audit = answer.body["destinations"]
    assert {k: v for k, v in orders.items() if k != "state"} == {
        "name": "orders",
        "url": receivers.orders.url,  # without the user, the password or the query
        "apps": [APP_ID],
        "events": ["notification.received"],
        "kinds": ["trade_*"],
    }
    assert orders["state"] == {
        "backlog": 1,
        "failing": 1,
        "dead": 0,
        "oldest_undelivered_age_seconds": 90.0,
        "last_error": "HTTP 500",
        "last_error_at": "2026-11-23T08:00:00Z",
    }
    assert (audit["name"], audit["apps"], audit["events"], audit["kinds"]) == (
        "audit",
        None,
        None,
        None,
    )
    assert audit["state"]["backlog"] == 0 and audit["state"]["last_error"] is None
    assert no_secret_in(answer)


async def test_a_token_for_some_apps_sees_only_the_destinations_carrying_only_its_apps(
    api: Api,
) -> None:
    writer, reader, other = (api.as_token(t) for t in (WRITER_TOKEN, READER_TOKEN, OTHER_APP_TOKEN))

    assert [
        d["name"] for d in (await writer.request("GET", "/v1/destinations")).body["destinations"]
    ] == ["orders"]
    assert (await other.request("GET", "/v1/destinations")).body == {"destinations": []}
    assert (await deliveries(writer)).status == 200
    refusals = [
        await deliveries(writer, "audit"),  # it carries OTHER_APP_ID's events too
        await deliveries(other),
        await replay_window(other, "orders", {"since": NOW.isoformat()}),
        await replay(reader, "orders", "evt_1"),  # read only
        await api.as_token(SEND_ONLY_TOKEN).request("GET", "/v1/destinations"),
    ]
    assert [(r.status, r.code) for r in refusals] == [(403, "forbidden")] * 5
    unknown = await deliveries(api, "nowhere")
    assert (unknown.status, unknown.code) == (404, "destination_not_found")


async def test_deliveries_come_newest_first_with_every_attempt_in_keyset_pages(
    api: Api, receivers: Receivers
) -> None:
    receivers.refused.add("broken")
    for number in range(5):
        await notify(api, f"order-{number}")
    await notify(api, "broken")
    await notify(api, "other-app", OTHER_APP_ID)  # not the orders destination's
    delivered = await until_deliveries(api, "delivered", 5)
    [failing] = await until_deliveries(api, "failing", 1)
    api.later(seconds=2)  # the retry is due
    [failing] = await until_deliveries_with_attempts(api, 2)

    feed = await api.request("GET", f"/v1/apps/{APP_ID}/events")
    ids = [event["id"] for event in feed.body["events"]]
    assert [d["event_id"] for d in delivered] == list(reversed(ids[:5]))
    assert {(d["status"], d["event_type"], d["app_id"]) for d in delivered} == {
        ("delivered", "notification.received", APP_ID)
    }
    assert [(a["status_code"], a["error"]) for a in delivered[0]["attempts"]] == [(204, None)]
    assert delivered[0]["delivered_at"] == "2026-11-23T08:00:00Z"
    assert failing["event_id"] == ids[5] and failing["status"] == "failing"
    assert [(a["status_code"], a["error"]) for a in failing["attempts"]] == [(500, "HTTP 500")] * 2
    assert [a["attempted_at"] for a in failing["attempts"]] == [
        "2026-11-23T08:00:00Z",
        "2026-11-23T08:00:02Z",
    ]
    assert all(a["latency_ms"] >= 0 for a in failing["attempts"])
    assert failing["next_attempt_at"] is not None and failing["delivered_at"] is None
    pending = await deliveries(api, status="pending")
    assert [d["event_id"] for d in pending.body["deliveries"]] == [ids[5]]

    pages, before = [], None
    while True:
        page = await deliveries(
            api, status="delivered", limit=2, **({"before": before} if before else {})
        )
        pages.append([d["event_id"] for d in page.body["deliveries"]])
        before = page.body["next_before"]
        if before is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == [d["event_id"] for d in delivered]


async def until_deliveries_with_attempts(api: Api, attempts: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def tried() -> bool:
        found[:] = (await deliveries(api, status="failing")).body["deliveries"]
        return bool(found) and len(found[0]["attempts"]) == attempts

    await eventually(tried)
    return found


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"status": "failed-ish"}, "invalid_parameter"),
        ({"limit": "0"}, "invalid_parameter"),
        ({"limit": "101"}, "invalid_parameter"),
        ({"before": "0"}, "invalid_parameter"),
        ({"before": "x"}, "invalid_parameter"),
    ],
)
async def test_bad_parameters_of_the_deliveries_are_400(
    api: Api, params: dict[str, str], code: str
) -> None:
    answer = await deliveries(api, **params)

    assert (answer.status, answer.code) == (400, code)


async def test_replaying_one_delivery_sends_it_again_with_the_same_id(
    api: Api, receivers: Receivers
) -> None:
    await notify(api, "fine")
    [first] = await receivers.orders.wait_for(1)
    await until_deliveries(api, "delivered", 1)  # its attempt is kept: it is done with

    answer = await replay(api, "orders", first.webhook_id)
    again = (await receivers.orders.wait_for(2))[1]

    assert (answer.status, answer.body) == (200, {"destination": "orders", "replayed": 1})
    assert (again.webhook_id, again.body) == (first.webhook_id, first.body)

    async def delivered_twice() -> bool:
        found = (await deliveries(api, status="delivered")).body["deliveries"]
        return [len(d["attempts"]) for d in found] == [2]

    await eventually(delivered_twice)


async def test_a_dead_delivery_replayed_is_delivered(api: Api, receivers: Receivers) -> None:
    receivers.refused.add("broken")
    await notify(api, "broken")
    [failing] = await until_deliveries(api, "failing", 1)
    api.later(seconds=GIVE_UP_SECONDS + 1)  # the next attempt is past the give-up time
    [dead] = await until_deliveries(api, "dead", 1)
    receivers.refused.clear()

    answer = await replay(api, "orders", dead["event_id"])
    [delivered] = await until_deliveries(api, "delivered", 1)

    assert answer.body["replayed"] == 1
    assert delivered["event_id"] == failing["event_id"]
    assert [a["status_code"] for a in delivered["attempts"]] == [500, 500, 204]
    assert (await deliveries(api, status="dead")).body["deliveries"] == []


async def feed_events(api: Api, count: int) -> list[dict[str, Any]]:
    """The feed's first ``count`` events, long-polled: on PostgreSQL the feed shows an event only
    once every transaction that began before it has ended (docs/events.md), and a delivery
    worker's pass may be one of them."""
    events: list[dict[str, Any]] = []
    cursor = ""
    while len(events) < count:
        after = f"&after={cursor}" if cursor else ""
        page = await api.request("GET", f"/v1/apps/{APP_ID}/events?wait=10{after}")
        assert page.status == 200, page.body
        events += page.body["events"]
        cursor = page.body["next_cursor"]
    return events


async def test_replaying_what_the_destination_never_had_is_404(api: Api) -> None:
    await notify(api, "fine")
    assert (await api.report(success_report(ONE_TIME))).status == 200  # orders takes no consent
    notified, consent = await feed_events(api, 2)
    consent_id = consent["id"]

    answers = [
        await replay(api, "orders", consent_id),
        await replay(api, "orders", "evt_999999"),
        await replay(api, "orders", "not-an-event"),
    ]
    unknown = await replay(api, "nowhere", notified["id"])

    assert [(a.status, a.code) for a in answers] == [(404, "delivery_not_found")] * 3
    assert (unknown.status, unknown.code) == (404, "destination_not_found")


async def test_a_window_replay_reaches_events_from_before_the_destination_was_configured(
    start: StartApi, receivers: Receivers
) -> None:
    before = await start(with_orders=False)
    await notify(before, "written-before-orders")
    api = await start()  # the same store, now with the orders destination
    await notify(api, "written-after")
    [after] = await receivers.orders.wait_for(1)
    assert after.payload["data"]["fields"]["out_trade_no"] == "written-after"

    since = (NOW - timedelta(minutes=1)).isoformat()
    answer = await replay_window(api, "orders", {"since": since})
    received = await receivers.orders.wait_for(3)

    assert (answer.status, answer.body) == (200, {"destination": "orders", "replayed": 2})
    orders = sorted(r.payload["data"]["fields"]["out_trade_no"] for r in received[1:])
    assert orders == ["written-after", "written-before-orders"]
    assert after.webhook_id in {r.webhook_id for r in received[1:]}
    later = await replay_window(api, "orders", {"since": (NOW + timedelta(hours=1)).isoformat()})
    assert later.body["replayed"] == 0


@pytest.mark.parametrize(
    "body", [{"since": "yesterday"}, {"since": "2026-11-23T08:00:00"}, {}, {"since": 5, "x": 1}]
)
async def test_a_window_replay_needs_a_time_with_its_zone(api: Api, body: Any) -> None:
    answer = await replay_window(api, "orders", body)

    assert (answer.status, answer.code) == (422, "validation_failed")


async def test_real_answers_validate_against_the_document(api: Api, receivers: Receivers) -> None:
    document = (await api.as_token(None).request("GET", "/openapi.json")).body
    receivers.refused.add("broken")
    await notify(api, "broken")
    [failing] = await until_deliveries(api, "failing", 1)
    event_id = failing["event_id"]
    exchanges = [
        ("/v1/destinations", "get", await api.request("GET", "/v1/destinations")),
        ("/v1/destinations/{name}/deliveries", "get", await deliveries(api)),
        ("/v1/destinations/{name}/deliveries", "get", await deliveries(api, limit="0")),
        ("/v1/destinations/{name}/deliveries", "get", await deliveries(api, "nowhere")),
        (REPLAY_ONE, "post", await replay(api, "orders", event_id)),
        (REPLAY_ONE, "post", await replay(api, "orders", "evt_999999")),
        (REPLAY_ONE, "post", await replay(api.as_token(READER_TOKEN), "orders", event_id)),
        (REPLAY_WINDOW, "post", await replay_window(api, "orders", {"since": NOW.isoformat()})),
        (REPLAY_WINDOW, "post", await replay_window(api, "orders", {"since": "soon"})),
    ]

    assert [answer.status for *_, answer in exchanges] == [
        200,
        200,
        400,
        404,
        200,
        404,
        403,
        200,
        422,
    ]
    for path, method, answer in exchanges:
        response = document["paths"][path][method]["responses"][str(answer.status)]
        schema = response["content"]["application/json"]["schema"]
        validator(document, schema).validate(answer.body)
        assert answer.status == 200 or answer.code in documented_codes(response)
