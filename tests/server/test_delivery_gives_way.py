"""Pushing events on gives way to intake: while many notifications wait for their commit, a
destination reads a few events and posts one per pause instead of whole reads and batches
(``server.delivery.worker``); the backlog is kept and drains once intake calms."""

from __future__ import annotations

from server.delivery.worker import BUSY_IN_FLIGHT, BUSY_PACE, FAN_OUT_LIMIT, Pace
from tests.server.conftest import Gateway
from tests.server.delivery_fixtures import stepped_worker
from tests.server.receiver import receiving


async def test_a_destination_takes_whole_batches_unless_intake_is_busy(gateway: Gateway) -> None:
    in_flight = [0]
    async with (
        receiving() as receiver,
        stepped_worker(gateway, receiver.url, intake_in_flight=lambda: in_flight[0]) as worker,
    ):
        whole = Pace(FAN_OUT_LIMIT, worker.batch_size)

        paces: list[Pace] = []
        for count in (0, BUSY_IN_FLIGHT - 1, BUSY_IN_FLIGHT, 10 * BUSY_IN_FLIGHT, 0):
            in_flight[0] = count
            paces.append(await worker.next_pace())

    assert paces == [whole, whole, BUSY_PACE, BUSY_PACE, whole]
    assert BUSY_PACE.claim < worker.batch_size and BUSY_PACE.fan_out < FAN_OUT_LIMIT
