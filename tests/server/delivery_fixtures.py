"""What the push tests share: secrets, ``[[destinations]]`` tables, a gateway that pushes to real
receivers, a destination worker driven step by step, and consent changes that make events of a
user."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook

from server.delivery.destinations import build_deliveries
from server.delivery.worker import DestinationWorker
from server.events.keys import EVENT_PAYLOADS
from server.settings import DestinationSettings, Settings, settings_from_mapping
from storage import Store
from storage.models import ConsentAction, ConsentEvent, ConsentSource
from tests.server.conftest import APP_ID, Gateway, app_config
from tests.server.receiver import Answer, Received

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NEW_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 140))).decode()
USER_A = "2088000000000001"
USER_B = "2088000000000002"


def destination(url: str, name: str = "orders", **overrides: Any) -> dict[str, Any]:
    """A ``[[destinations]]`` table posting to ``url``, signed with ``SECRET``."""
    return {"name": name, "url": url, "secret": SECRET, **overrides}


def pushing_settings(
    tmp_path: Path, *destinations: dict[str, Any], storage_url: str | None = None
) -> Settings:
    """Two apps on a SQLite file in ``tmp_path`` (or at ``storage_url``), pushing to
    ``destinations``."""
    url = storage_url or f"sqlite:///{tmp_path / 'subgate.db'}"
    data: dict[str, Any] = {
        "storage": {"url": url, "busy_timeout_ms": 2000},
        "apps": [app_config(), app_config("2021000000000002")],
        "destinations": list(destinations),
    }
    return settings_from_mapping(data, base_dir=tmp_path)


def real_now() -> datetime:
    """A receiver verifying with the reference library refuses timestamps far from its clock."""
    return datetime.now(UTC).replace(microsecond=0)


@asynccontextmanager
async def stepped_worker(
    gateway: Gateway,
    url: str,
    draw: Callable[[], float] = lambda: 1.0,
    intake_in_flight: Callable[[], int] = lambda: 0,
    **overrides: Any,
) -> AsyncIterator[DestinationWorker]:
    """A worker of one destination on the gateway's store and clock, not running: the test calls
    ``step()``. It has fanned out once, so its cursor stands at the end of the log."""
    settings = DestinationSettings.model_validate(destination(url, **overrides))
    deliveries = build_deliveries(
        [settings],
        gateway.settings.base_dir,
        gateway.store,
        gateway.app[EVENT_PAYLOADS],
        gateway.clock,
        draw=draw,
        intake_in_flight=intake_in_flight,
    )
    worker = deliveries.get(settings.name)
    assert worker is not None
    await worker.courier.open()
    try:
        await worker.fan_out()
        yield worker
    finally:
        await worker.courier.close()


async def change_consent(
    store: Store, user_id: str, action: ConsentAction, at: datetime, app_id: str = APP_ID
) -> None:
    """One operator grant or revoke of the user's jym_push consent: one ``consent.changed``."""
    event = ConsentEvent(
        app_id=app_id,
        user_id=user_id,
        channel="jym_push",
        template_id="default",
        action=action,
        occurred_at=at,
        source=ConsentSource.OPERATOR,
        evidence="test",
    )
    await store.append_consent_events([event], at)


def signed_by(received: Received, secret: str) -> bool:
    """Whether the reference library finds a signature of ``secret`` among the request's, at the
    request's own timestamp (the tests' clocks are not the reference library's)."""
    when = datetime.fromtimestamp(int(received.headers["webhook-timestamp"]), UTC)
    expected = Webhook(secret).sign(received.webhook_id, when, received.body)
    return expected in received.headers["webhook-signature"].split(" ")


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 15.0) -> None:
    """Wait until ``check()`` holds, reading it again as the system moves (bounded)."""
    end = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < end, "the condition did not come true in time"
        await asyncio.sleep(0.02)


def failing_first_event_of(user_id: str, failed: list[str]) -> Answer:
    """A receiver's answer: 503 to the first event of ``user_id`` (its id kept in ``failed``),
    200 to every other, so that user's later events must wait for its retry."""

    async def answer(request: web.Request, got: Received) -> web.StreamResponse:
        if got.payload["data"]["user_id"] == user_id and not failed:
            failed.append(got.webhook_id)
            return web.Response(status=503)
        return web.Response(status=200)

    return answer
