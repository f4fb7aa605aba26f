"""The console in a real browser (Debian's Chromium through Playwright): logging in and out,
a session ending, the overview's charts, a follow from the gateway to the user's page, and
every page rendered without a CSP violation or a script error, saved as screenshots."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from playwright.async_api import Browser

from server.intake.keys import REFUSALS
from tests.server.api_client import ADMIN_TOKEN, READER_TOKEN, USER
from tests.server.conftest import APP_ID, Gateway
from tests.server.console.browser import Tab, chromium, tab
from tests.server.console.seed import accepted, follow, forged, trade, unknown_message


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def operator(browser: Browser, gateway: Gateway) -> AsyncIterator[Tab]:
    async with tab(browser, str(gateway.client.make_url(""))) as opened:
        yield opened


async def test_login_is_refused_then_accepted_and_logout_ends_it(operator: Tab) -> None:
    await operator.open("/console")
    await operator.shot("login")
    await operator.log_in("not-a-known-token-123")
    assert await operator.page.get_by_role("alert").inner_text() == (
        "That token is not one this Subgate knows."
    )
    await operator.shot("login-refused")

    await operator.log_in(ADMIN_TOKEN)
    await operator.page.get_by_role("heading", name="Overview").wait_for()

    await operator.page.get_by_role("button", name="Log out").click()
    await operator.page.get_by_label("API token").wait_for()
    await operator.page.go_back()
    await operator.page.reload()
    assert await operator.page.get_by_label("API token").is_visible()
    assert operator.problems == []


async def test_a_session_ends_after_its_idle_time(operator: Tab, gateway: Gateway) -> None:
    await operator.open(f"/console/apps/{APP_ID}/notifications")
    await operator.log_in(READER_TOKEN)
    await operator.page.get_by_role("heading", name="Notifications").wait_for()

    gateway.clock.now += timedelta(minutes=31)
    await operator.page.reload()

    assert await operator.page.get_by_label("API token").is_visible()
    await operator.log_in(READER_TOKEN)  # and back to the page it was on
    await operator.page.get_by_role("heading", name="Notifications").wait_for()


async def test_the_overview_draws_its_charts(operator: Tab, gateway: Gateway) -> None:
    for order in ("order-1", "order-2", "order-3"):
        await trade(gateway, order)
    await forged(gateway)
    await gateway.app[REFUSALS].flush(gateway.store, gateway.clock.now)
    await operator.open("/console")
    await operator.log_in(ADMIN_TOKEN)

    charts = operator.page.locator("svg[data-chart]")

    assert await charts.count() == 4
    first = charts.first
    assert "3 accepted, 1 refused" in (await first.get_attribute("aria-label") or "")
    assert await first.locator("rect.accepted").count() == 1
    assert await first.locator("rect.refused").count() == 1
    await operator.shot("overview")
    assert operator.problems == []


async def test_a_follow_is_seen_from_the_notifications_to_the_users_page(
    operator: Tab, gateway: Gateway
) -> None:
    await follow(gateway)
    await operator.open(f"/console/apps/{APP_ID}/notifications")
    await operator.log_in(READER_TOKEN)
    await operator.shot("notifications")

    await operator.page.get_by_role("row").nth(1).get_by_role("link").first.click()
    await operator.page.get_by_role("heading", name="Consent events it caused").wait_for()
    await operator.shot("notification")
    await operator.page.get_by_role("link", name=USER).first.click()

    await operator.page.get_by_role("heading", name=f"User {USER}").wait_for()
    history = operator.page.get_by_role("row").filter(has_text="follow")
    assert "alipay_notify" in await history.first.inner_text()
    await operator.shot("user")
    assert operator.problems == []


async def test_the_search_box_finds_a_user_with_the_keyboard(
    operator: Tab, gateway: Gateway
) -> None:
    await accepted(gateway)
    await operator.open("/console")
    await operator.log_in(READER_TOKEN)

    await operator.page.get_by_label("User id").fill(USER)
    await operator.page.keyboard.press("Enter")

    await operator.page.get_by_role("heading", name=f"User {USER}").wait_for()
    assert await operator.page.get_by_text("can send").first.is_visible()


async def test_messages_list_and_an_unknown_message(operator: Tab, gateway: Gateway) -> None:
    await accepted(gateway)
    message_id = await unknown_message(gateway)
    await operator.open(f"/console/apps/{APP_ID}/messages")
    await operator.log_in(ADMIN_TOKEN)
    await operator.page.get_by_label("Status").select_option("unknown")
    await operator.page.get_by_role("button", name="Filter").click()
    await operator.shot("messages")

    await operator.page.get_by_role("link", name=message_id).click()

    await operator.page.get_by_role("heading", name="Attempts").wait_for()
    await operator.shot("message")
    assert operator.problems == []
