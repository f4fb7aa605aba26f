"""Pushing events on gives way to intake: while the event loop is busy, a destination reads a few
events and posts one per pause instead of whole reads and batches (``server.delivery.worker``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from server.delivery.worker import BUSY_PACE, FAN_OUT_LIMIT, DestinationWorker, Pace
from server.runtime.loop_load import yield_seconds
from tests.server.conftest import Gateway
from tests.server.delivery_fixtures import stepped_worker
from tests.server.receiver import receiving


@contextlib.asynccontextmanager
async def busy_loop(block_seconds: float) -> AsyncIterator[None]:
    """A task that holds the loop ``block_seconds`` at a time, as a burst of requests does."""

    async def hog() -> None:
        while True:
            time.sleep(block_seconds)  # noqa: ASYNC251 (the point: the loop is kept busy)
            await asyncio.sleep(0)

    task = asyncio.create_task(hog())
    await asyncio.sleep(0)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_yield_is_quick_at_rest_and_slow_while_the_loop_is_busy() -> None:
    assert await yield_seconds() < 0.002
    async with busy_loop(0.005):
        assert await yield_seconds() >= 0.005


async def test_a_destination_takes_whole_batches_at_rest_and_a_trickle_while_busy(
    gateway: Gateway,
) -> None:
    async with receiving() as receiver, stepped_worker(gateway, receiver.url) as worker:
        assert isinstance(worker, DestinationWorker)
        whole = Pace(FAN_OUT_LIMIT, worker.batch_size)
        assert await worker.next_pace() == whole
        async with busy_loop(0.005):
            assert await worker.next_pace() == BUSY_PACE
        assert await worker.next_pace() == whole
    assert BUSY_PACE.claim < worker.batch_size and BUSY_PACE.fan_out < FAN_OUT_LIMIT
