"""The pieces of a push that need no store: Standard Webhooks headers checked by the reference
library (``standardwebhooks``), the backoff schedule, and which events a destination takes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from server.delivery.backoff import Backoff
from server.delivery.filters import destination_filter
from server.delivery.signing import webhook_headers
from server.settings import settings_from_mapping
from storage.models import EventHead

OLD = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NEW = "whsec_" + base64.b64encode(bytes(range(64, 128))).decode()
STRANGER = "whsec_" + base64.b64encode(bytes(24)).decode()
BODY = json.dumps({"type": "consent.changed", "data": {"user_id": "2088", "名": "张"}}).encode()


def key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def test_the_reference_library_verifies_our_headers() -> None:
    headers = webhook_headers([key(OLD)], "evt_42", datetime.now(UTC), BODY)

    assert Webhook(OLD).verify(BODY, headers)["data"]["名"] == "张"
    assert headers["webhook-id"] == "evt_42"


def test_with_two_secrets_either_one_verifies_during_a_rotation() -> None:
    headers = webhook_headers([key(OLD), key(NEW)], "evt_7", datetime.now(UTC), BODY)

    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(part.startswith("v1,") for part in headers["webhook-signature"].split(" "))
    assert Webhook(OLD).verify(BODY, headers) == Webhook(NEW).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(STRANGER).verify(BODY, headers)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b.replace(b"2088", b"2089")),
        lambda h, b: ({**h, "webhook-id": "evt_8"}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
    ],
    ids=["body", "id", "timestamp"],
)
def test_anything_changed_fails_verification(tamper: Any) -> None:
    headers, body = tamper(webhook_headers([key(OLD)], "evt_7", datetime.now(UTC), BODY), BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(body, headers)


def test_the_timestamp_is_the_attempts_and_an_old_one_is_refused() -> None:
    at = datetime.now(UTC) - timedelta(minutes=10)

    headers = webhook_headers([key(OLD)], "evt_7", at, BODY)

    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(OLD).verify(BODY, headers)


def backoff(draw: float = 1.0, give_up: float = 3600.0) -> Backoff:
    return Backoff(5.0, 60.0, give_up, lambda: draw)


def test_the_ceiling_doubles_from_the_initial_wait_up_to_the_cap() -> None:
    assert [backoff().ceiling(n) for n in range(1, 8)] == [5, 10, 20, 40, 60, 60, 60]
    assert backoff().ceiling(10_000) == 60


@pytest.mark.parametrize(("draw", "seconds"), [(0.0, 0.0), (0.5, 10.0), (0.999, 19.98)])
def test_full_jitter_waits_a_drawn_share_of_the_ceiling(draw: float, seconds: float) -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)

    due = backoff(draw).next_attempt(3, now)

    assert (due - now).total_seconds() == pytest.approx(seconds)


def test_the_default_draw_spreads_retries_under_the_ceiling() -> None:
    now = datetime(2026, 11, 23, tzinfo=UTC)
    schedule = Backoff(5.0, 60.0, 3600.0)

    waits = {(schedule.next_attempt(4, now) - now).total_seconds() for _ in range(200)}

    assert len(waits) > 150 and all(0 <= wait < 40 for wait in waits)


def test_a_delivery_dies_once_it_has_failed_for_give_up_after_seconds() -> None:
    since = datetime(2026, 11, 23, tzinfo=UTC)
    schedule = backoff(give_up=100.0)

    assert not schedule.is_dead(since, since + timedelta(seconds=99.999))
    assert schedule.is_dead(since, since + timedelta(seconds=100))


def wants(**destination: Any) -> Any:
    table = {"name": "orders", "url": "http://127.0.0.1:9/", "secret": OLD, **destination}
    apps = [{"app_id": app, "alipay_public_key": "k"} for app in ("2021000000000001", "2021002")]
    settings = settings_from_mapping({"apps": apps, "destinations": [table]}, base_dir=Path("."))
    return destination_filter(settings.destinations[0])


TRADE = EventHead("notification.received", "2021000000000001", "trade_status_sync")
COMPLAINT = EventHead("notification.received", "2021000000000001", "alipay.merchant.complain")
CONSENT = EventHead("consent.changed", "2021000000000001", None)
OTHER_APP = EventHead("message.updated", "2021002", None)


@pytest.mark.parametrize(
    ("filters", "taken"),
    [
        ({}, [TRADE, COMPLAINT, CONSENT, OTHER_APP]),
        ({"apps": ["2021002"]}, [OTHER_APP]),
        ({"events": ["notification.received"]}, [TRADE, COMPLAINT]),
        ({"events": ["consent.*", "message.*"]}, [CONSENT, OTHER_APP]),
        ({"kinds": ["trade_*"]}, [TRADE, CONSENT, OTHER_APP]),
        ({"kinds": ["alipay.merchant.*"], "events": ["notification.*"]}, [COMPLAINT]),
        ({"kinds": ["trade_status_sync"], "apps": ["2021002"]}, [OTHER_APP]),
    ],
    ids=[
        "all",
        "apps",
        "type",
        "type-globs",
        "kinds-leave-kindless",
        "kinds-and-type",
        "kinds-apps",
    ],
)
def test_a_destination_takes_what_its_filters_name(
    filters: dict[str, Any], taken: list[EventHead]
) -> None:
    wanted = wants(**filters)

    assert [head for head in (TRADE, COMPLAINT, CONSENT, OTHER_APP) if wanted(head)] == taken
