"""The push as the running service does it: Subgate in-process on 127.0.0.1 with
``[[destinations]]`` pointing at real receivers, its workers in the background.

Clocks here are the wall clock (the reference library refuses timestamps far from its own), and
waiting is on conditions: a request arriving, a row changing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from server.delivery.keys import DELIVERY
from tests.server.conftest import Clock, Gateway, StartGateway
from tests.server.delivery_fixtures import (
    NEW_SECRET,
    SECRET,
    destination,
    eventually,
    pushing_settings,
    real_now,
)
from tests.server.notifications import post, signed, trade_fields
from tests.server.receiver import Received, Receiver, receiving


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


async def pushing(
    start_gateway: StartGateway, tmp_path: Path, *destinations: dict[str, object]
) -> Gateway:
    settings = pushing_settings(tmp_path, *destinations)
    return await start_gateway(settings, Clock(real_now()))


async def notify(gateway: Gateway) -> str:
    fields = signed(trade_fields(when=gateway.clock.now))
    status, _, body = await post(gateway.client, fields)
    assert (status, body) == (200, b"success")
    return fields["notify_id"]


async def test_a_stored_notification_is_pushed_at_once_and_verifies(
    start_gateway: StartGateway, tmp_path: Path, receiver: Receiver
) -> None:
    # A poll this slow proves the push was woken by the write, not found by polling.
    gateway = await pushing(start_gateway, tmp_path, destination(receiver.url, poll_seconds=60))
    started = time.monotonic()

    notify_id = await notify(gateway)
    [received] = await receiver.wait_for(1)

    assert time.monotonic() - started < 5
    payload = received.verify(SECRET)  # the reference library, with its own clock
    assert payload["type"] == "notification.received"
    assert payload["data"]["notify_id"] == notify_id
    assert payload["data"]["fields"]["trade_status"] == "TRADE_SUCCESS"
    assert "sign" not in payload["data"]["fields"]

    async def delivered() -> bool:
        return bool(await gateway.store.delivery_histories("orders", "delivered", 10))

    await eventually(delivered)


async def test_with_two_secrets_a_receiver_holding_either_verifies(
    start_gateway: StartGateway, tmp_path: Path, receiver: Receiver
) -> None:
    table = destination(receiver.url, secret=[SECRET, NEW_SECRET])
    gateway = await pushing(start_gateway, tmp_path, table)

    await notify(gateway)
    [received] = await receiver.wait_for(1)

    assert received.verify(SECRET) == received.verify(NEW_SECRET)
    assert len(received.headers["webhook-signature"].split(" ")) == 2


async def test_a_slow_destination_slows_neither_intake_nor_another_destination(
    start_gateway: StartGateway, tmp_path: Path, receiver: Receiver
) -> None:
    answered = asyncio.Event()

    async def five_seconds(request: web.Request, got: Received) -> web.StreamResponse:
        await asyncio.sleep(5)
        answered.set()
        return web.Response(status=200)

    async with receiving() as slow:
        slow.answer = five_seconds
        gateway = await pushing(
            start_gateway,
            tmp_path,
            destination(slow.url, name="slow", concurrency=2),
            destination(receiver.url, name="fast"),
        )
        started = time.monotonic()
        took = []
        for _ in range(20):
            begun = time.monotonic()
            await notify(gateway)
            took.append(time.monotonic() - begun)
        fast = await receiver.wait_for(20)

        assert not answered.is_set(), "the slow destination answered: the test proves nothing"
        assert time.monotonic() - started < 3.0
        assert max(took) < 1.0
        assert len({r.webhook_id for r in fast}) == 20
        assert 1 <= len(slow.received) <= 2  # its concurrency, every request still hanging
        await gateway.client.close()  # the slow receiver's requests are cut as Subgate stops


async def test_metrics_count_deliveries_and_show_the_backlog_without_secrets(
    start_gateway: StartGateway,
    tmp_path: Path,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def refuse(request: web.Request, got: Received) -> web.StreamResponse:
        return web.Response(status=503)

    async with receiving() as failing:
        failing.answer = refuse
        credentialed = failing.url.replace("http://", "http://hookuser:hunter2hunter2@")
        gateway = await pushing(
            start_gateway,
            tmp_path,
            destination(receiver.url),
            destination(credentialed, name="failing", retry_initial_seconds=3600),
        )
        await notify(gateway)
        await notify(gateway)
        await receiver.wait_for(2)
        await failing.wait_for(2)

        async def counted() -> bool:
            text = await (await gateway.client.get("/metrics")).text()
            return 'result="retry"} 2.0' in text and 'result="delivered"} 2.0' in text

        await eventually(counted)
        text = await (await gateway.client.get("/metrics")).text()

    assert 'subgate_deliveries_total{destination="orders",result="delivered"} 2.0' in text
    assert 'subgate_deliveries_total{destination="failing",result="retry"} 2.0' in text
    assert 'subgate_delivery_backlog{destination="failing",state="pending"} 2.0' in text
    assert 'subgate_delivery_backlog{destination="failing",state="failing"} 2.0' in text
    assert 'subgate_delivery_backlog{destination="orders",state="pending"} 0.0' in text
    assert 'subgate_delivery_oldest_pending_seconds{destination="orders"} 0.0' in text
    assert 'subgate_delivery_attempt_seconds_count{destination="orders"} 2.0' in text
    assert "hunter2" not in text and "hookuser" not in text
    assert SECRET[6:] not in text and "127.0.0.1" not in text
    assert "hunter2" not in caplog.text and SECRET[6:] not in caplog.text


async def test_the_running_destinations_are_there_for_the_routes(
    start_gateway: StartGateway, tmp_path: Path, receiver: Receiver
) -> None:
    gateway = await pushing(
        start_gateway, tmp_path, destination(receiver.url), destination(receiver.url, name="b")
    )

    deliveries = gateway.app[DELIVERY]

    assert [worker.name for worker in deliveries] == ["orders", "b"]
    orders = deliveries.get("orders")
    assert orders is not None and deliveries.get("nowhere") is None
    await notify(gateway)
    await receiver.wait_for(2)

    async def noted() -> bool:
        return orders.courier.last.status_code == 204

    await eventually(noted)
    assert orders.courier.last.at is not None and orders.courier.last.in_flight == 0


async def test_a_replay_is_sent_as_soon_as_the_destination_is_woken(
    start_gateway: StartGateway, tmp_path: Path, receiver: Receiver
) -> None:
    answers = iter([500])

    async def fail_once(request: web.Request, got: Received) -> web.StreamResponse:
        return web.Response(status=next(answers, 200))

    receiver.answer = fail_once
    table = destination(receiver.url, poll_seconds=60, retry_initial_seconds=3600)
    gateway = await pushing(start_gateway, tmp_path, table)
    await notify(gateway)
    [first] = await receiver.wait_for(1)

    async def failing() -> bool:
        return bool(await gateway.store.delivery_histories("orders", "failing", 10))

    await eventually(failing)
    event_id = int(first.webhook_id.removeprefix("evt_"))
    assert await gateway.store.replay_delivery("orders", event_id, gateway.clock())
    gateway.app[DELIVERY].wake("orders")
    started = time.monotonic()
    [_, again] = await receiver.wait_for(2)

    assert time.monotonic() - started < 5  # not the hour of the retry, nor the minute of the poll
    assert again.webhook_id == first.webhook_id
