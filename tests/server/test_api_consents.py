"""PUT .../consents/{channel}/{template}: opt-in channels, and life-account follows from the
notification gateway showing up in the same lookups."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.server.api_client import (
    ONE_TIME,
    USER,
    Api,
    ledger_rows,
    start_api,
)
from tests.server.conftest import APP_ID, OTHER_APP_ID, StartGateway
from tests.server.notifications import life_account_fields, post, signed


@pytest.fixture
async def api(start_gateway: StartGateway, tmp_path: Path) -> AsyncIterator[Api]:
    api = await start_api(start_gateway, tmp_path)
    yield api
    await api.assert_projection_is_the_fold(APP_ID)  # after every scenario
    await api.assert_projection_is_the_fold(OTHER_APP_ID)


@pytest.mark.parametrize("channel", ["jym_push", "workcore"])
async def test_granting_an_opt_in_channel_allows_sending_with_the_operator_as_source(
    api: Api, channel: str
) -> None:
    answer = await api.put_consent(
        channel, "order_updates", {"status": "granted", "evidence": "ticket #4411, signed form"}
    )

    expected = {
        "template_id": "order_updates",
        "channel": channel,
        "kind": "long_term",
        "status": "granted",
        "credits": 0,
        "can_send": True,
        "keep": False,
        "refuse": False,
        "updated_at": "2026-11-23T08:00:00Z",
        "last_source": "operator",
    }
    assert (answer.status, answer.body) == (200, expected)
    assert (await api.subscription("order_updates", channel=channel)).body == expected
    [event] = (await api.history("order_updates", channel=channel)).body["events"]
    assert (event["action"], event["source"], event["evidence"]) == (
        "grant",
        "operator",
        "ticket #4411, signed form",
    )
    await api.assert_projection_is_the_fold()


async def test_revoking_an_opt_in_channel_stops_sending_and_keeps_both_pieces_of_evidence(
    api: Api,
) -> None:
    await api.put_consent("jym_push", ONE_TIME, {"status": "granted", "evidence": "app toggle on"})
    api.later(minutes=1)

    answer = await api.put_consent(
        "jym_push", ONE_TIME, {"status": "revoked", "evidence": "app toggle off"}
    )

    assert (answer.body["status"], answer.body["can_send"]) == ("revoked", False)
    history = (await api.history(ONE_TIME, channel="jym_push")).body["events"]
    assert [(e["action"], e["evidence"], e["source"]) for e in history] == [
        ("grant", "app toggle on", "operator"),
        ("revoke", "app toggle off", "operator"),
    ]
    await api.assert_projection_is_the_fold()


async def test_an_older_revocation_recorded_late_does_not_undo_a_newer_grant(api: Api) -> None:
    await api.put_consent("workcore", "shift", {"status": "granted", "evidence": "hr portal"})

    late = await api.put_consent(
        "workcore",
        "shift",
        {
            "status": "revoked",
            "evidence": "paper form from last week",
            "occurred_at": (api.clock.now - timedelta(days=7)).isoformat(),
        },
    )

    assert (late.status, late.body["status"], late.body["can_send"]) == (200, "granted", True)
    await api.assert_projection_is_the_fold()


@pytest.mark.parametrize(
    ("occurred_at", "status"),
    [
        ("2026-11-23T08:05:01+00:00", 422),
        ("2026-11-23T08:00:00", 422),
        ("2026-11-23T16:04:00+08:00", 200),
    ],
    ids=["over-5-min-ahead", "naive", "within-skew"],
)
async def test_an_explicit_occurred_at_must_be_aware_and_not_in_the_future(
    api: Api, occurred_at: str, status: int
) -> None:
    answer = await api.put_consent(
        "jym_push", "promo", {"status": "granted", "evidence": "e", "occurred_at": occurred_at}
    )

    assert answer.status == status, answer.text
    assert len(await api.store.consent_events(APP_ID)) == (status == 200)


@pytest.mark.parametrize("channel", ["mini_template", "life_account"])
async def test_a_channel_whose_consent_comes_from_the_platform_cannot_be_put(
    api: Api, channel: str
) -> None:
    answer = await api.put_consent(channel, ONE_TIME, {"status": "granted", "evidence": "trust me"})

    assert (answer.status, answer.code) == (422, "channel_not_opt_in")
    assert "jym_push" in answer.body["error"]["message"]
    assert ledger_rows(api.gateway)["consent_events"] == []
    assert ledger_rows(api.gateway)["consents"] == []


async def test_an_unknown_channel_is_a_validation_failure(api: Api) -> None:
    answer = await api.put_consent("sms", ONE_TIME, {"status": "granted", "evidence": "e"})

    assert (answer.status, answer.code) == (422, "validation_failed")
    assert await api.store.consent_events(APP_ID) == []


async def test_a_life_account_follow_notification_shows_up_as_a_followed_subscription(
    api: Api,
) -> None:
    follow = signed(
        life_account_fields(
            "follow", USER, when=api.clock.now - timedelta(minutes=1), charset="UTF-8"
        ),
        rule="V2",
    )

    status, code, _ = await post(api.gateway.client, follow)

    assert (status, code) == (200, "")
    answer = await api.subscriptions()
    assert answer.body["subscriptions"] == [
        {
            "template_id": "account",
            "channel": "life_account",
            "kind": "long_term",
            "status": "followed",
            "credits": 0,
            "can_send": True,
            "keep": False,
            "refuse": False,
            "updated_at": "2026-11-23T07:59:00Z",
            "last_source": "alipay_notify",
        }
    ]
    one = await api.subscription("account", channel="life_account")
    assert one.body == answer.body["subscriptions"][0]
    [event] = (await api.history("account", channel="life_account")).body["events"]
    assert (event["action"], event["source"]) == ("follow", "alipay_notify")
    assert event["evidence"].startswith("notify:")
    await api.assert_projection_is_the_fold()


async def test_a_life_account_unfollow_stops_sending(api: Api) -> None:
    for event, minutes in (("follow", 2), ("unfollow", 1)):
        when = api.clock.now - timedelta(minutes=minutes)
        fields = life_account_fields(event, USER, when=when, charset="UTF-8")
        status, _, _ = await post(api.gateway.client, signed(fields, rule="V2"))
        assert status == 200

    answer = await api.subscription("account", channel="life_account")

    assert (answer.body["status"], answer.body["can_send"]) == ("unfollowed", False)
    lookup = await api.lookup(
        {"template_id": "account", "channel": "life_account", "user_ids": [USER]}
    )
    assert lookup.body["results"] == [
        {"user_id": USER, "can_send": False, "credits": 0, "status": "unfollowed"}
    ]
