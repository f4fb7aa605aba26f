"""The console's pages over HTTP: what each shows, what a token may see, and refusals as pages
with their status and code."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest

from server.console import notifications
from server.intake.keys import REFUSALS
from tests.server.api_client import ADMIN_TOKEN, ONE_TIME, OTHER_APP_TOKEN, READER_TOKEN, USER
from tests.server.conftest import APP_ID, OTHER_APP_ID, Gateway
from tests.server.console.http import Console
from tests.server.console.seed import (
    OTHER_USER,
    accepted,
    follow,
    forged,
    retried_message,
    trade,
    unknown_message,
)

APP_PAGES = ["notifications", f"users/{USER}", "messages"]


async def test_the_overview_draws_each_apps_charts_and_counts(
    console: Console, gateway: Gateway
) -> None:
    await trade(gateway, "order-1")
    await trade(gateway, "order-2")
    await forged(gateway)
    await gateway.app[REFUSALS].flush(gateway.store, gateway.clock.now)
    await console.log_in(ADMIN_TOKEN)

    text = (await console.get("/console")).text

    assert text.count("<svg") == 4  # two charts for each of the two apps
    assert "2 accepted, 1 refused" in text  # the last hour of APP_ID
    assert "<code>bad_signature</code>" in text
    assert 'class="accepted"' in text and 'class="refused"' in text


async def test_a_follow_shows_on_the_notifications_page_and_on_the_users_page(
    console: Console, gateway: Gateway
) -> None:
    await follow(gateway)
    await console.log_in(READER_TOKEN)

    listed = (await console.get(f"/console/apps/{APP_ID}/notifications")).text
    user = (await console.get(f"/console/apps/{APP_ID}/users/{USER}")).text

    assert "life_account" in listed or "follow" in listed
    [key] = [e.evidence for e in await gateway.store.consent_events(APP_ID, USER)]
    notify_id = key.removeprefix("notify:")
    assert notify_id in listed
    assert "follow" in user and "alipay_notify" in user and key in user
    opened = (await console.get(f"/console/apps/{APP_ID}/notifications/{quote(notify_id)}")).text
    assert "FromAlipayUserId" in opened and USER in opened  # biz_content, parsed
    assert "Consent events it caused" in opened and "alipay_notify" in opened


async def test_notifications_are_filtered_and_paged(console: Console, gateway: Gateway) -> None:
    first = await trade(gateway, "order-1")
    second = await trade(gateway, "order-2")
    await console.log_in(ADMIN_TOKEN)

    text = (await console.get(f"/console/apps/{APP_ID}/notifications?q={second[:12]}")).text
    bad = await console.get(f"/console/apps/{APP_ID}/notifications?since=yesterday")

    assert second in text and first not in text
    assert (bad.status, bad.headers["X-Subgate-Error"]) == (400, "invalid_parameter")


async def test_a_text_search_reads_a_bounded_stretch_and_offers_to_go_on(
    console: Console, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notifications, "SEARCH_ROWS", 2)
    oldest = await trade(gateway, "order-1")
    for order in ("order-2", "order-3"):
        await trade(gateway, order)
    await console.log_in(ADMIN_TOKEN)

    page = f"/console/apps/{APP_ID}/notifications"
    first = (await console.get(f"{page}?q={oldest}")).text
    onward = re.search(r'href="\?([^"]+)" rel="next">Search older', first)
    assert onward is not None
    second = (await console.get(f"{page}?{html.unescape(onward.group(1))}")).text

    listed = first.split("<table>")[1] if "<table>" in first else ""
    assert oldest not in listed and "Searched 2 notifications of this range" in first
    assert f'Notify id <a class="mono" href="{page}/{oldest}">{oldest}</a>' in first
    assert oldest in second.split("<table>")[1] and "Search older" not in second


async def test_a_user_page_shows_state_history_and_messages(
    console: Console, gateway: Gateway
) -> None:
    await accepted(gateway)
    message_id = await unknown_message(gateway)
    await console.log_in(READER_TOKEN)

    text = (await console.get(f"/console/apps/{APP_ID}/users/{USER}")).text

    assert ONE_TIME in text and "cannot send" in text and "0 credits" in text  # spent
    assert "accept" in text and "client_report" in text and "spend" in text
    assert message_id in text and "unknown" in text


async def test_messages_are_filtered_by_status_and_opened(
    console: Console, gateway: Gateway
) -> None:
    await accepted(gateway)
    message_id = await unknown_message(gateway)
    await console.log_in(READER_TOKEN)

    unknown = (await console.get(f"/console/apps/{APP_ID}/messages?status=unknown")).text
    sent = (await console.get(f"/console/apps/{APP_ID}/messages?status=sent")).text
    opened = (await console.get(f"/console/apps/{APP_ID}/messages/{message_id}")).text

    assert message_id in unknown and message_id not in sent
    assert "Attempts" in opened and USER in opened and "unknown" in opened
    assert "no answer" in opened  # the abandoned attempt: nothing from the platform


async def test_a_message_shows_every_attempt_with_its_codes(
    console: Console, gateway: Gateway
) -> None:
    await accepted(gateway)
    message_id = await retried_message(gateway)
    await console.log_in(READER_TOKEN)

    text = (await console.get(f"/console/apps/{APP_ID}/messages/{message_id}")).text
    attempts = text.split('id="attempts"')[1].split("</table>")[0]
    rows = attempts.split("<tr>")[2:]  # after the header row

    assert len(rows) == 2
    assert "retry" in rows[0] and "isp.unknow-error" in rows[0] and "系统繁忙" in rows[0]
    assert "the platform was busy" in rows[0] and "10000" not in rows[0]
    assert "sent" in rows[1] and "10000" in rows[1] and "Success" in rows[1]


async def test_the_search_box_leads_to_the_users_page(console: Console) -> None:
    await console.log_in(READER_TOKEN)

    found = await console.get(f"/console/users?app_id={APP_ID}&user_id={USER}")
    bad = await console.get(f"/console/users?app_id={APP_ID}&user_id=not%20an%20id")

    assert (found.status, found.location) == (303, f"/console/apps/{APP_ID}/users/{USER}")
    assert (bad.status, bad.headers["X-Subgate-Error"]) == (422, "validation_failed")


@pytest.mark.parametrize("page", APP_PAGES)
async def test_a_token_never_sees_an_app_it_was_not_given(
    console: Console, gateway: Gateway, page: str
) -> None:
    await follow(gateway, OTHER_USER)
    await console.log_in(OTHER_APP_TOKEN)

    refused = await console.get(f"/console/apps/{APP_ID}/{page}")
    overview = (await console.get("/console")).text
    search = await console.get(f"/console/users?app_id={APP_ID}&user_id={OTHER_USER}")

    assert (refused.status, refused.headers["X-Subgate-Error"]) == (403, "forbidden")
    assert OTHER_USER not in refused.text
    assert APP_ID not in overview and OTHER_APP_ID in overview
    assert search.status == 403


async def test_an_unconfigured_app_is_not_found(console: Console) -> None:
    await console.log_in(ADMIN_TOKEN)

    answer = await console.get("/console/apps/2021999999999999/notifications")

    assert (answer.status, answer.headers["X-Subgate-Error"]) == (404, "app_not_found")


def unlabelled_fields(text: str) -> list[str]:
    """The visible form fields of a page neither inside a ``<label>``, nor named by a
    ``<label for=...>`` or an ``aria-label``."""
    labelled = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', text))
    unwrapped = re.sub(r"<label\b[^>]*>.*?</label>", "", text, flags=re.DOTALL)
    missing = []
    for field in re.findall(r"<(?:input|select|textarea)\b[^>]*>", unwrapped):
        if 'type="hidden"' in field or "aria-label=" in field:
            continue
        found = re.search(r'\bid="([^"]+)"', field)
        if found is None or found.group(1) not in labelled:
            missing.append(field)
    return missing


async def test_every_field_of_every_page_has_a_label(console: Console, gateway: Gateway) -> None:
    await follow(gateway)
    await accepted(gateway)
    message_id = await unknown_message(gateway)
    await console.log_in(ADMIN_TOKEN)
    paths = [
        "/console",
        *(f"/console/apps/{APP_ID}/{page}" for page in APP_PAGES),
        f"/console/apps/{APP_ID}/messages/{message_id}",
        "/console/deliveries",
    ]

    pages = {path: (await console.get(path)).text for path in paths}

    assert all("<input" in text or "<select" in text for text in pages.values())  # search box
    assert {path: unlabelled_fields(text) for path, text in pages.items()} == {
        path: [] for path in paths
    }
