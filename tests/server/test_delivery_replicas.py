"""Two Subgate replicas on one PostgreSQL database push to the same destination: every event is
delivered, and no delivery is ever being attempted by both at once (the receiver watches what
is in flight per ``webhook-id``). Every first attempt fails, so retries are claimed too."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from server.ops.metrics import METRICS
from tests.server.conftest import Clock, Gateway, StartGateway
from tests.server.delivery_fixtures import destination, eventually, pushing_settings
from tests.server.notifications import post, signed, trade_fields
from tests.server.receiver import Received, Receiver, receiving
from tests.storage.postgres_env import fresh_schema, server_url

EVENTS = 40


class WallClock(Clock):
    """Retries come due only on a clock that moves."""

    def __call__(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with fresh_schema(server_url()) as url:
        yield url


def attempts(gateway: Gateway, result: str) -> float:
    sample = gateway.app[METRICS].registry.get_sample_value(
        "subgate_deliveries_total", {"destination": "orders", "result": result}
    )
    return sample or 0.0


async def test_two_replicas_never_attempt_one_delivery_at_the_same_time(
    postgres_url: str, start_gateway: StartGateway, tmp_path: Path
) -> None:
    # (postgres_url first: the replicas stop before their schema is dropped)
    in_flight: Counter[str] = Counter()
    tries: Counter[str] = Counter()
    overlaps: list[str] = []

    async def slow_and_failing_once(request: web.Request, got: Received) -> web.StreamResponse:
        if in_flight[got.webhook_id]:
            overlaps.append(got.webhook_id)
        in_flight[got.webhook_id] += 1
        try:
            await asyncio.sleep(0.02)
            tries[got.webhook_id] += 1
            return web.Response(status=500 if tries[got.webhook_id] == 1 else 200)
        finally:
            in_flight[got.webhook_id] -= 1

    receiver: Receiver
    async with receiving() as receiver:
        receiver.answer = slow_and_failing_once
        table = destination(
            receiver.url,
            retry_initial_seconds=0.05,
            retry_max_seconds=0.1,
            poll_seconds=0.05,
            concurrency=4,
        )
        settings = pushing_settings(tmp_path, table, storage_url=postgres_url)
        replicas = [await start_gateway(settings, WallClock()) for _ in range(2)]
        for index in range(EVENTS):
            fields = signed(trade_fields(when=datetime.now(UTC)))
            status, _, _ = await post(replicas[index % 2].client, fields)
            assert status == 200

        async def all_delivered() -> bool:
            # The verdicts as the replicas kept them, not only the receiver's answers.
            delivered = await replicas[0].store.delivery_histories("orders", "delivered", 1000)
            return len(delivered) == EVENTS

        async def all_counted() -> bool:
            # Each replica counts a batch once it is kept: a moment after a reader sees it.
            return sum(attempts(replica, "delivered") for replica in replicas) >= EVENTS

        await eventually(all_delivered, seconds=60)
        await eventually(all_counted)

    assert overlaps == []
    assert len(tries) == EVENTS and all(n >= 2 for n in tries.values())
    assert sum(tries.values()) == len(receiver.received) >= 2 * EVENTS
    assert all(
        attempts(replica, "retry") + attempts(replica, "delivered") > 0 for replica in replicas
    )
    assert sum(attempts(replica, "delivered") for replica in replicas) == EVENTS
