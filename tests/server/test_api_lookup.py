"""Lookups: every subscription of a user, one template, its history, and 1,000 users at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from storage.models import ConsentAction, ConsentChannel, ConsentEvent, ConsentSource
from tests.server.api_client import (
    LONG_TERM,
    ONE_TIME,
    OTHER_USER,
    SECOND_ONE_TIME,
    UNREGISTERED,
    USER,
    Api,
    ledger_rows,
    platform_cancel,
    start_api,
    success_report,
)
from tests.server.conftest import APP_ID, NOW, OTHER_APP_ID, StartGateway


@pytest.fixture
async def api(start_gateway: StartGateway, tmp_path: Path) -> AsyncIterator[Api]:
    api = await start_api(start_gateway, tmp_path)
    yield api
    await api.assert_projection_is_the_fold(APP_ID)  # after every scenario
    await api.assert_projection_is_the_fold(OTHER_APP_ID)


def nobody(template: str, *, kind: str, channel: str = "mini_template") -> dict[str, Any]:
    """What the API answers for a (user, template) the ledger has never heard of."""
    return {
        "template_id": template,
        "channel": channel,
        "kind": kind,
        "status": "none",
        "credits": 0,
        "can_send": False,
        "keep": False,
        "refuse": False,
        "updated_at": None,
        "last_source": None,
    }


async def test_every_template_and_channel_of_a_user_is_listed(api: Api) -> None:
    await api.report(success_report(ONE_TIME, LONG_TERM, rejected=[UNREGISTERED]))
    api.later(minutes=1)
    granted = await api.put_consent(
        "jym_push", "order_updates", {"status": "granted", "evidence": "form 12"}
    )
    revoked = await api.put_consent("workcore", "daily", {"status": "revoked", "evidence": "call"})
    await api.report(success_report(ONE_TIME), user=OTHER_USER)  # someone else's
    assert (granted.status, revoked.status) == (200, 200)

    answer = await api.subscriptions()

    assert answer.status == 200
    assert answer.body["user_id"] == USER
    listed = [
        (s["channel"], s["template_id"], s["kind"], s["status"], s["credits"], s["can_send"])
        for s in answer.body["subscriptions"]
    ]
    assert listed == [
        ("jym_push", "order_updates", "long_term", "granted", 0, True),
        ("mini_template", UNREGISTERED, "unknown", "rejected", 0, False),
        ("mini_template", LONG_TERM, "long_term", "subscribed", 0, True),
        ("mini_template", ONE_TIME, "one_time", "subscribed", 1, True),
        ("workcore", "daily", "long_term", "revoked", 0, False),
    ]
    by_template = {s["template_id"]: s for s in answer.body["subscriptions"]}
    assert by_template["order_updates"]["last_source"] == "operator"
    assert by_template["order_updates"]["updated_at"] == "2026-11-23T08:01:00Z"
    assert by_template[ONE_TIME]["last_source"] == "client_report"
    assert by_template[ONE_TIME]["updated_at"] == "2026-11-23T08:00:00Z"


async def test_an_unknown_user_has_no_subscriptions_and_is_not_an_error(api: Api) -> None:
    answer = await api.subscriptions("2088000000009999")

    assert (answer.status, answer.body) == (
        200,
        {"user_id": "2088000000009999", "subscriptions": []},
    )


@pytest.mark.parametrize(
    ("template", "kind"),
    [(ONE_TIME, "one_time"), (LONG_TERM, "long_term"), (UNREGISTERED, "unknown")],
)
async def test_an_unknown_user_cannot_be_sent_to_and_is_not_an_error(
    api: Api, template: str, kind: str
) -> None:
    answer = await api.subscription(template, "2088000000009999")

    assert (answer.status, answer.body) == (200, nobody(template, kind=kind))
    assert await api.store.consent_events(APP_ID) == []  # a lookup writes nothing


async def test_one_template_is_answered_for_the_mini_program_channel_by_default(
    api: Api,
) -> None:
    report = await api.report(success_report(ONE_TIME))

    answer = await api.subscription(ONE_TIME)

    assert answer.status == 200
    assert answer.body == report.body["subscriptions"][0]
    assert (answer.body["channel"], answer.body["credits"], answer.body["can_send"]) == (
        "mini_template",
        1,
        True,
    )


async def test_the_channel_query_selects_an_opt_in_channel(api: Api) -> None:
    await api.put_consent("jym_push", ONE_TIME, {"status": "granted", "evidence": "app settings"})

    push = await api.subscription(ONE_TIME, channel="jym_push")
    mini = await api.subscription(ONE_TIME)

    assert (push.body["channel"], push.body["status"], push.body["can_send"]) == (
        "jym_push",
        "granted",
        True,
    )
    assert mini.body == nobody(ONE_TIME, kind="one_time")


async def test_history_is_oldest_first_with_sources_evidence_and_recording_times(
    api: Api,
) -> None:
    # Recorded in this order, but it happened accept (07:50), cancel (07:55), accept (08:02).
    cancel_at = NOW - timedelta(minutes=5)
    await api.store.append_consent_events([platform_cancel(ONE_TIME, cancel_at)], NOW)
    api.later(minutes=2)
    await api.report(success_report(ONE_TIME), key="late-report")
    api.later(minutes=1)
    await api.report(
        {**success_report(ONE_TIME), "reported_at": "2026-11-23T15:50:00+08:00"},
        key="old-report",
    )

    answer = await api.history(ONE_TIME)

    assert answer.status == 200
    assert {k: answer.body[k] for k in ("user_id", "template_id", "channel")} == {
        "user_id": USER,
        "template_id": ONE_TIME,
        "channel": "mini_template",
    }
    assert answer.body["events"] == [
        {
            "action": "accept",
            "occurred_at": "2026-11-23T07:50:00Z",
            "recorded_at": "2026-11-23T08:03:00Z",
            "source": "client_report",
            "evidence": "report:old-report",
            "keep": False,
            "refuse": False,
        },
        {
            "action": "cancel",
            "occurred_at": "2026-11-23T07:55:00Z",
            "recorded_at": "2026-11-23T08:00:00Z",
            "source": "platform_query",
            "evidence": f"query:{ONE_TIME}:{cancel_at.isoformat()}",
            "keep": None,
            "refuse": None,
        },
        {
            "action": "accept",
            "occurred_at": "2026-11-23T08:02:00Z",
            "recorded_at": "2026-11-23T08:02:00Z",
            "source": "client_report",
            "evidence": "report:late-report",
            "keep": False,
            "refuse": False,
        },
    ]
    assert (await api.subscription_of(ONE_TIME))["credits"] == 1
    await api.assert_projection_is_the_fold()


async def test_the_history_of_an_unknown_user_is_empty(api: Api) -> None:
    answer = await api.history(LONG_TERM, "2088000000009999", channel="jym_push")

    assert (answer.status, answer.body) == (
        200,
        {
            "user_id": "2088000000009999",
            "template_id": LONG_TERM,
            "channel": "jym_push",
            "events": [],
        },
    )


def accept(user: str, template: str, minute: int) -> ConsentEvent:
    return ConsentEvent(
        app_id=APP_ID,
        user_id=user,
        channel=ConsentChannel.MINI_TEMPLATE,
        template_id=template,
        action=ConsentAction.ACCEPT,
        occurred_at=NOW - timedelta(minutes=minute),
        source=ConsentSource.CLIENT_REPORT,
        evidence=f"report:{user}:{minute}",
    )


async def test_a_bulk_lookup_of_1000_users_answers_each_in_request_order(api: Api) -> None:
    # 0..299 accepted (users divisible by 3 twice), 300..499 accepted then cancelled,
    # 500..599 accepted another template only, 600..999 unknown; the ids are shuffled below.
    users = [f"2088{n:012d}" for n in range(1000)]
    events = [accept(u, ONE_TIME, 30) for u in users[:500]]
    events += [accept(u, ONE_TIME, 20) for u in users[:300:3]]
    events += [
        platform_cancel(ONE_TIME, NOW - timedelta(minutes=10), user=u) for u in users[300:500]
    ]
    events += [accept(u, SECOND_ONE_TIME, 30) for u in users[500:600]]
    await api.store.append_consent_events(events, NOW)
    # Two through the API as well, so both paths feed the same lookup.
    await api.report(success_report(ONE_TIME), user=users[999])
    await api.report(success_report(ONE_TIME), user=users[998])
    asked = users[::-1][:500] + users[:500]  # request order is not id order

    answer = await api.lookup({"template_id": ONE_TIME, "user_ids": asked})

    assert answer.status == 200, answer.text
    assert {k: answer.body[k] for k in ("template_id", "channel", "kind")} == {
        "template_id": ONE_TIME,
        "channel": "mini_template",
        "kind": "one_time",
    }

    def expected(user: str) -> dict[str, Any]:
        n = int(user[4:])
        if n < 300:
            credits = 2 if n % 3 == 0 else 1
            return {"user_id": user, "can_send": True, "credits": credits, "status": "subscribed"}
        if n < 500:
            return {"user_id": user, "can_send": False, "credits": 0, "status": "cancelled"}
        if n >= 998:
            return {"user_id": user, "can_send": True, "credits": 1, "status": "subscribed"}
        return {"user_id": user, "can_send": False, "credits": 0, "status": "none"}

    assert answer.body["results"] == [expected(user) for user in asked]
    for user in (users[0], users[3], users[1], users[400], users[550], users[700], users[999]):
        one = (await api.subscription(ONE_TIME, user)).body
        assert (one["can_send"], one["credits"]) == (
            expected(user)["can_send"],
            expected(user)["credits"],
        )


async def test_a_bulk_lookup_of_a_long_term_template_answers_no_credits(api: Api) -> None:
    await api.report(success_report(LONG_TERM))
    await api.report(success_report(rejected=[LONG_TERM]), user=OTHER_USER)

    answer = await api.lookup({"template_id": LONG_TERM, "user_ids": [USER, OTHER_USER, "x"]})

    assert answer.body["kind"] == "long_term"
    assert answer.body["results"] == [
        {"user_id": USER, "can_send": True, "credits": 0, "status": "subscribed"},
        {"user_id": OTHER_USER, "can_send": False, "credits": 0, "status": "rejected"},
        {"user_id": "x", "can_send": False, "credits": 0, "status": "none"},
    ]


async def test_a_bulk_lookup_on_an_opt_in_channel(api: Api) -> None:
    await api.put_consent("jym_push", "promo", {"status": "granted", "evidence": "opt-in"})

    answer = await api.lookup(
        {"template_id": "promo", "channel": "jym_push", "user_ids": [OTHER_USER, USER]}
    )

    assert (answer.body["channel"], answer.body["kind"]) == ("jym_push", "long_term")
    assert [(r["user_id"], r["can_send"]) for r in answer.body["results"]] == [
        (OTHER_USER, False),
        (USER, True),
    ]


async def test_duplicated_ids_are_answered_once_in_order_of_first_appearance(api: Api) -> None:
    await api.report(success_report(ONE_TIME))

    answer = await api.lookup(
        {"template_id": ONE_TIME, "user_ids": [OTHER_USER, USER, OTHER_USER, USER, USER]}
    )

    assert [(r["user_id"], r["credits"]) for r in answer.body["results"]] == [
        (OTHER_USER, 0),
        (USER, 1),
    ]


async def test_a_bulk_lookup_of_1001_users_is_refused_and_writes_nothing(api: Api) -> None:
    await api.report(success_report(ONE_TIME))
    before = ledger_rows(api.gateway)

    answer = await api.lookup(
        {"template_id": ONE_TIME, "user_ids": [f"2088{n:012d}" for n in range(1001)]}
    )

    assert (answer.status, answer.code) == (422, "validation_failed")
    assert "user_ids" in answer.body["error"]["message"]
    assert ledger_rows(api.gateway) == before


async def test_1000_duplicates_of_one_id_are_one_answer(api: Api) -> None:
    answer = await api.lookup({"template_id": ONE_TIME, "user_ids": [USER] * 1000})

    assert answer.status == 200
    assert [r["user_id"] for r in answer.body["results"]] == [USER]
