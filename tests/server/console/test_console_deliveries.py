"""Deliveries in the console: a destination's dead delivery, with its attempts, replayed from
the browser and then delivered; the same desk as /v1, so a read-only token gets no button and
its forged replay is refused. On SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser

from server.settings import settings_from_mapping
from storage.models import DeliveryHistory
from tests.server.api_client import ADMIN_TOKEN, READER_TOKEN, TEMPLATES, TOKENS, api_credentials
from tests.server.conftest import APP_ID, OTHER_APP_ID, Gateway, StartGateway, app_config
from tests.server.console.browser import chromium, tab
from tests.server.console.http import Console
from tests.server.console.seed import trade
from tests.server.delivery_fixtures import SECRET, destination, eventually
from tests.server.receiver import Received, Receiver, receiving

GIVE_UP_SECONDS = 60
PASSWORD, QUERY_TOKEN = "hunter2-console-password", "query-console-token"  # in the URL: never shown


@dataclass
class Hooked:
    gateway: Gateway
    receiver: Receiver
    refusing: list[bool] = field(default_factory=lambda: [True])

    async def histories(self, status: str) -> list[DeliveryHistory]:
        return await self.gateway.store.delivery_histories("orders", status, 10)

    async def until(self, status: str) -> DeliveryHistory:
        found: list[DeliveryHistory] = []

        async def there() -> bool:
            found[:] = await self.histories(status)
            return bool(found)

        await eventually(there)
        return found[0]


@pytest.fixture
async def hooked(
    store_url: str, start_gateway: StartGateway, tmp_path: Path
) -> AsyncIterator[Hooked]:
    """Subgate pushing APP_ID's events to "orders", a receiver that fails until told not to."""
    async with receiving() as receiver:
        hooked: Hooked | None = None

        async def answer(request: web.Request, received: Received) -> web.StreamResponse:
            return web.Response(status=500 if hooked and hooked.refusing[0] else 204)

        receiver.answer = answer
        credentialed = receiver.url.replace("://", f"://hookuser:{PASSWORD}@")
        orders = destination(
            f"{credentialed}?token={QUERY_TOKEN}",
            "orders",
            apps=[APP_ID],
            retry_initial_seconds=1,
            retry_max_seconds=1,
            give_up_after_seconds=GIVE_UP_SECONDS,
            poll_seconds=0.05,
        )
        data: dict[str, Any] = {
            "storage": {"url": store_url, "busy_timeout_ms": 2000},
            "apps": [app_config(APP_ID, templates=TEMPLATES), app_config(OTHER_APP_ID)],
            "tokens": TOKENS,
            "destinations": [orders],
        }
        settings = settings_from_mapping(data, base_dir=tmp_path)
        gateway = await start_gateway(settings, credentials=api_credentials(settings))
        hooked = Hooked(gateway, receiver)
        yield hooked


async def dead_delivery(hooked: Hooked) -> DeliveryHistory:
    await trade(hooked.gateway, "broken")
    await hooked.until("failing")
    hooked.gateway.clock.now += timedelta(seconds=GIVE_UP_SECONDS + 1)
    return await hooked.until("dead")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


async def test_a_dead_delivery_is_replayed_from_the_browser(
    hooked: Hooked, browser: Browser
) -> None:
    dead = await dead_delivery(hooked)
    base = str(hooked.gateway.client.make_url(""))
    async with tab(browser, base) as operator:
        await operator.open("/console/deliveries")
        await operator.log_in(ADMIN_TOKEN)
        await operator.shot("deliveries")
        await operator.page.get_by_role("link", name="1", exact=True).last.click()  # dead: 1
        event = f"evt_{dead.delivery.event_id}"
        await operator.page.get_by_text(event).wait_for()
        await operator.shot("destination-dead")
        hooked.refusing[0] = False

        await operator.page.get_by_role("button", name=f"Replay {event}").click()

        await operator.page.get_by_role("status").wait_for()
        assert "Replayed 1 delivery" in await operator.page.get_by_role("status").inner_text()
        assert operator.problems == []
    delivered = await hooked.until("delivered")
    assert delivered.delivery.event_id == dead.delivery.event_id
    assert [a.status_code for a in delivered.attempts][-1] == 204
    assert await hooked.histories("dead") == []


async def test_a_read_only_token_may_look_but_not_replay(hooked: Hooked) -> None:
    dead = await dead_delivery(hooked)
    console = Console(hooked.gateway.client)
    await console.log_in(READER_TOKEN)

    page = await console.get("/console/deliveries/orders?status=dead")
    forged = await console.post(
        "/console/deliveries/orders/replay",
        {"csrf": await console.csrf(), "event_id": f"evt_{dead.delivery.event_id}"},
    )

    assert f"evt_{dead.delivery.event_id}" in page.text and "Replay" not in page.text
    assert (forged.status, forged.headers["X-Subgate-Error"]) == (403, "forbidden")
    assert len(await hooked.histories("dead")) == 1


async def test_no_console_page_shows_the_destinations_secret_or_credentials(
    hooked: Hooked,
) -> None:
    dead = await dead_delivery(hooked)
    console = Console(hooked.gateway.client)
    await console.log_in(ADMIN_TOKEN)
    paths = [
        "/console",
        "/console/deliveries",
        "/console/deliveries/orders?status=dead",
        "/console/deliveries/orders?status=failing",
        f"/console/apps/{APP_ID}/notifications",
    ]

    texts = [(await console.get(path)).text for path in paths]

    assert all(f"evt_{dead.delivery.event_id}" in text for text in texts[2:3])
    for text in texts:
        assert not any(
            s in text for s in (PASSWORD, QUERY_TOKEN, SECRET[6:], "hookuser", ADMIN_TOKEN)
        )


async def test_a_time_window_is_replayed_from_the_console(hooked: Hooked) -> None:
    dead = await dead_delivery(hooked)
    console = Console(hooked.gateway.client)
    await console.log_in(ADMIN_TOKEN)
    hooked.refusing[0] = False
    since = (dead.delivery.created_at - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")

    refused = await console.post(
        "/console/deliveries/orders/replay-since", {"csrf": await console.csrf(), "since": "soon"}
    )
    answer = await console.post(
        "/console/deliveries/orders/replay-since", {"csrf": await console.csrf(), "since": since}
    )

    assert (refused.status, refused.headers["X-Subgate-Error"]) == (400, "invalid_parameter")
    assert answer.status == 303 and "replayed=1" in (answer.location or "")
    delivered = await hooked.until("delivered")
    assert delivered.delivery.event_id == dead.delivery.event_id
    assert await hooked.histories("dead") == []
