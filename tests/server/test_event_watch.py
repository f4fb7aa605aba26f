"""The watch on the event log stops when asked, even when a commit pokes it at that moment, and
a waiter cancelled just as the log moves ends cancelled: Python 3.11's ``asyncio.wait_for``
returned normally in both races (the watch then ran on and its ``stop`` never returned)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from server.events.watch import EventWatch
from storage import Store
from storage.models import START, EventPosition


class GrowingLog:
    """The one read the watch makes, of a log that has grown by one event at each read."""

    def __init__(self) -> None:
        self.position = START

    async def last_event_position(self) -> EventPosition:
        self.position = EventPosition(0, self.position.id + 1)
        return self.position


async def started_watch() -> EventWatch:
    watch = EventWatch(cast(Store, GrowingLog()), poll_seconds=30.0)
    await watch.start()
    await asyncio.sleep(0)  # the watch now waits for a poke
    return watch


async def test_a_poke_arriving_with_the_stop_does_not_keep_the_watch_running() -> None:
    watch = await started_watch()

    watch.poke()
    stopping = asyncio.create_task(watch.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)

    assert done == {stopping}


async def test_a_waiter_cancelled_as_the_log_moves_ends_cancelled() -> None:
    watch = await started_watch()
    waiter = asyncio.create_task(watch.wait_beyond(watch.position, 30))
    for _ in range(2):
        await asyncio.sleep(0)  # the waiter now waits on the watch's condition

    await watch._check()  # the log moved: the waiter is woken, but has not run yet
    waiter.cancel()

    with pytest.raises(asyncio.CancelledError):
        await waiter
    await watch.stop()


async def test_commits_with_nobody_waiting_cost_no_read_and_the_next_waiter_reads_first() -> None:
    log = GrowingLog()
    watch = EventWatch(cast(Store, log), poll_seconds=30.0)
    await watch.start()
    reads = log.position.id
    for _ in range(100):
        watch.poke()
        await asyncio.sleep(0)

    assert log.position.id == reads  # a hundred commits, not one read
    assert await watch.wait_beyond(EventPosition(0, reads), 30)  # read at once, not at the poll
    assert log.position.id == reads + 1
    await watch.stop()


async def test_a_commit_wakes_a_waiter_at_once() -> None:
    watch = await started_watch()
    waiter = asyncio.create_task(watch.wait_beyond(watch.position, 30))
    for _ in range(2):
        await asyncio.sleep(0)  # the waiter now waits on the watch's condition

    watch.poke()

    assert await asyncio.wait_for(waiter, 5)
    await watch.stop()
