"""Pushing events on gives way to intake: while notifications wait for their commit, a
destination reads and claims little at a time, and while many wait it reads a few events and
posts one per pause, instead of whole reads and batches (``server.delivery.worker``); the
backlog is kept and drains once intake calms. With push workers, passes stay whole and the
trickle also needs the event loop's thread to be busy."""

from __future__ import annotations

from server.delivery.batch import Courier
from server.delivery.worker import (
    BATCHES_IN_FLIGHT,
    BUSY_IN_FLIGHT,
    BUSY_PACE,
    FAN_OUT_LIMIT,
    SHARED_IN_FLIGHT,
    DestinationWorker,
    Pace,
)
from server.events.keys import EVENT_PAYLOADS
from server.settings import DestinationSettings
from tests.server.conftest import Gateway
from tests.server.delivery_fixtures import destination, stepped_worker
from tests.server.receiver import receiving


async def test_a_destination_takes_whole_batches_only_while_intake_is_quiet(
    gateway: Gateway,
) -> None:
    in_flight = [0]
    async with (
        receiving() as receiver,
        stepped_worker(gateway, receiver.url, intake_in_flight=lambda: in_flight[0]) as worker,
    ):
        whole = Pace(FAN_OUT_LIMIT, worker.batch_size, BATCHES_IN_FLIGHT)

        paces: list[Pace] = []
        counts = (0, SHARED_IN_FLIGHT - 1, SHARED_IN_FLIGHT, BUSY_IN_FLIGHT - 1, BUSY_IN_FLIGHT)
        for count in (*counts, 10 * BUSY_IN_FLIGHT, 0):
            in_flight[0] = count
            paces.append(await worker.next_pace())

    shared = paces[2]
    assert paces == [whole, whole, shared, shared, BUSY_PACE, BUSY_PACE, whole]
    assert BUSY_PACE.claim < shared.claim < worker.batch_size
    assert BUSY_PACE.fan_out <= shared.fan_out < FAN_OUT_LIMIT
    assert BUSY_PACE.batches <= shared.batches < BATCHES_IN_FLIGHT  # fewer passes ahead of posts


async def test_a_moments_spike_of_waiting_commits_is_not_taken_for_a_burst(
    gateway: Gateway,
) -> None:
    looks = iter([BUSY_IN_FLIGHT, 0, BUSY_IN_FLIGHT, BUSY_IN_FLIGHT])  # two passes, two looks each
    async with (
        receiving() as receiver,
        stepped_worker(gateway, receiver.url, intake_in_flight=lambda: next(looks)) as worker,
    ):
        spike = await worker.next_pace()
        burst = await worker.next_pace()

    assert spike == Pace(FAN_OUT_LIMIT, worker.batch_size, BATCHES_IN_FLIGHT)
    assert burst == BUSY_PACE


async def test_with_push_workers_passes_are_whole_until_intake_is_busy(gateway: Gateway) -> None:
    in_flight = [0]
    settings = DestinationSettings.model_validate(destination("http://127.0.0.1:9/hook"))
    courier = Courier(settings, [b"k" * 32], gateway.app[EVENT_PAYLOADS], gateway.clock)
    worker = DestinationWorker(
        settings,
        courier,
        gateway.store,
        gateway.clock,
        "owner",
        intake_in_flight=lambda: in_flight[0],
        posts_elsewhere=True,
    )
    whole = Pace(FAN_OUT_LIMIT, worker.batch_size, BATCHES_IN_FLIGHT)

    paces = []
    for count in (0, SHARED_IN_FLIGHT, BUSY_IN_FLIGHT - 1, BUSY_IN_FLIGHT, 0):
        in_flight[0] = count
        paces.append(await worker.next_pace())

    assert paces == [whole, whole, whole, BUSY_PACE, whole]
