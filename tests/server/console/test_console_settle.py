"""Settling an unknown message from the console: through the same operation as the API's
``:settle``, ``not delivered`` gives the one-time credit back, the reason stands in the ledger
as evidence, a second settle is refused, and only a token with ``write`` and ``send`` may do it.
In the browser, and over HTTP for the refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser

from server.api.keys import LEDGER
from tests.server.api_client import ADMIN_TOKEN, ONE_TIME, USER, WRITER_TOKEN
from tests.server.conftest import APP_ID, Gateway
from tests.server.console.browser import chromium, tab
from tests.server.console.http import Console
from tests.server.console.seed import accepted, unknown_message

REASON = "the user says nothing arrived"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


async def credits(gateway: Gateway) -> int:
    return (await gateway.app[LEDGER].subscription(APP_ID, USER, ONE_TIME)).credits


async def test_an_unknown_message_settled_not_delivered_refunds_its_credit(
    gateway: Gateway, browser: Browser
) -> None:
    await accepted(gateway)
    message_id = await unknown_message(gateway)
    assert await credits(gateway) == 0
    async with tab(browser, str(gateway.client.make_url(""))) as operator:
        await operator.open(f"/console/apps/{APP_ID}/messages/{message_id}")
        await operator.log_in(ADMIN_TOKEN)
        await operator.page.get_by_label("Not delivered (refund)").check()
        await operator.page.get_by_label("Reason").fill(REASON)
        await operator.shot("message-settle")

        await operator.page.get_by_role("button", name="Settle").click()

        await operator.page.get_by_role("status").wait_for()
        assert "settled_not_delivered" in await operator.page.locator("h1").inner_text()
        assert REASON in await operator.page.get_by_role("main").inner_text()
        await operator.shot("message-settled")
        await operator.open(f"/console/apps/{APP_ID}/users/{USER}")
        row = operator.page.get_by_role("row").filter(has_text="refund")
        assert REASON in await row.inner_text() and "operator" in await row.inner_text()
        assert operator.problems == []
    assert await credits(gateway) == 1


async def test_a_settle_is_refused_twice_and_to_a_token_without_send(
    console: Console, gateway: Gateway
) -> None:
    await accepted(gateway)
    message_id = await unknown_message(gateway)
    path = f"/console/apps/{APP_ID}/messages/{message_id}"
    await console.log_in(WRITER_TOKEN)  # read and write, no send

    shown = await console.get(path)
    refused = await console.post(
        f"{path}/settle", {"csrf": await console.csrf(), "outcome": "delivered", "reason": "x"}
    )
    assert "Settle this unknown message" not in shown.text
    assert (refused.status, refused.headers["X-Subgate-Error"]) == (403, "forbidden")

    await console.post("/console/logout", {"csrf": await console.csrf()})
    await console.log_in(ADMIN_TOKEN)
    csrf = await console.csrf()
    blank = await console.post(f"{path}/settle", {"csrf": csrf, "outcome": "delivered"})
    done = await console.post(
        f"{path}/settle", {"csrf": csrf, "outcome": "delivered", "reason": "seen on the phone"}
    )
    again = await console.post(
        f"{path}/settle", {"csrf": csrf, "outcome": "not_delivered", "reason": "changed my mind"}
    )

    assert (blank.status, blank.headers["X-Subgate-Error"]) == (422, "validation_failed")
    assert (done.status, done.location) == (303, f"{path}?settled=1")
    assert (again.status, again.headers["X-Subgate-Error"]) == (409, "message_not_unknown")
    assert await credits(gateway) == 0  # delivered: the credit stays spent
