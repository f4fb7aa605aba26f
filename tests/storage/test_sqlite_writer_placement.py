"""Where the writer applies a batch: one statement of a ``one_write`` bulk write on the event
loop's thread, everything else on the writer thread, and the writer thread for a while after a
statement on the loop waited for the disk (``storage/sqlite/writer.py``)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from storage.sqlite.connection import SQLiteOptions, connect
from storage.sqlite.writer import (
    DISK_WAIT_LIMIT_SECONDS,
    GATHER_ITERATIONS,
    THREAD_SECONDS,
    BulkWrite,
    SerialWriter,
)

SLOW = -1  # an item whose statement waits, as a statement waiting for a slow disk would
STALL = -2  # an item whose statement waits ten times as long as that


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Inserts:
    """A bulk write of integers, each call one INSERT, noting the thread each call ran on."""

    threads: list[int] = field(default_factory=list)

    def apply(self, connection: sqlite3.Connection, items: Sequence[int]) -> list[int]:
        self.threads.append(threading.get_ident())
        if SLOW in items:
            time.sleep(3 * DISK_WAIT_LIMIT_SECONDS)  # waits without using the CPU
        if STALL in items:
            time.sleep(30 * DISK_WAIT_LIMIT_SECONDS)
        values = ", ".join("(?)" for _ in items)
        connection.execute(f"INSERT INTO t (v) VALUES {values}", list(items))  # noqa: S608
        return list(items)

    def bulk(self, *, one_write: bool = True, max_items: int = 64) -> BulkWrite[int, int]:
        return BulkWrite("inserts", self.apply, max_items=max_items, one_write=one_write)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def writer(tmp_path: Path, clock: Clock) -> AsyncIterator[SerialWriter]:
    def open_with_table() -> sqlite3.Connection:
        connection = connect(SQLiteOptions(path=tmp_path / "w.db"))
        connection.execute("CREATE TABLE t (v INTEGER NOT NULL)")
        return connection

    writer = await SerialWriter.open(open_with_table, clock=clock)
    yield writer
    await writer.close()


async def writer_thread(writer: SerialWriter) -> int:
    return await writer.run(lambda _: threading.get_ident())


async def stored(writer: SerialWriter) -> list[int]:
    rows = await writer.run(lambda c: c.execute("SELECT v FROM t ORDER BY v").fetchall())
    return [value for (value,) in rows]


async def test_one_statement_of_a_one_write_bulk_runs_on_the_event_loops_thread(
    writer: SerialWriter,
) -> None:
    inserts = Inserts()
    bulk = inserts.bulk()

    results = await asyncio.gather(*(writer.run_bulk(bulk, value) for value in (1, 2, 3)))

    assert results == [1, 2, 3]
    assert inserts.threads == [threading.get_ident()]
    assert writer.batches_on_loop == 1
    assert await stored(writer) == [1, 2, 3]


@pytest.mark.parametrize(
    ("one_write", "max_items"), [(False, 64), (True, 2)], ids=["not-one-write", "two-chunks"]
)
async def test_a_bulk_write_of_more_than_one_statement_runs_on_the_writer_thread(
    writer: SerialWriter, one_write: bool, max_items: int
) -> None:
    inserts = Inserts()
    bulk = inserts.bulk(one_write=one_write, max_items=max_items)

    await asyncio.gather(*(writer.run_bulk(bulk, value) for value in (1, 2, 3)))

    assert set(inserts.threads) == {await writer_thread(writer)}
    assert threading.get_ident() not in inserts.threads
    assert writer.batches_on_loop == 0
    assert await stored(writer) == [1, 2, 3]


async def test_a_batch_with_a_job_beside_the_bulk_items_runs_on_the_writer_thread(
    writer: SerialWriter,
) -> None:
    inserts = Inserts()
    bulk = inserts.bulk()

    *_, job_thread = await asyncio.gather(
        writer.run_bulk(bulk, 1), writer.run_bulk(bulk, 2), writer_thread(writer)
    )

    assert inserts.threads == [job_thread]
    assert job_thread != threading.get_ident()
    assert writer.batches_on_loop == 0


async def test_a_batch_waits_for_a_maintain_job_and_then_runs_on_the_writer_thread(
    writer: SerialWriter,
) -> None:
    inserts = Inserts()
    release = threading.Event()
    held = asyncio.create_task(writer.maintain(lambda _: release.wait(10)))
    write = asyncio.create_task(writer.run_bulk(inserts.bulk(), 1))
    for _ in range(GATHER_ITERATIONS + 5):  # a batch on the loop would be done by now
        await asyncio.sleep(0)

    assert not write.done()
    release.set()
    assert await write == 1
    assert await held is True
    assert inserts.threads == [await writer_thread(writer)]
    assert writer.batches_on_loop == 0


async def until_one_runs_on_the_writer_thread(
    writer: SerialWriter, bulk: BulkWrite[int, int], inserts: Inserts
) -> int:
    """Slow statements, one batch each, until a batch leaves the loop; how many that took."""
    loop_thread = threading.get_ident()
    for written in range(1, 21):
        await writer.run_bulk(bulk, SLOW)
        if inserts.threads[-1] != loop_thread:
            return written
    raise AssertionError("twenty slow statements and every batch still on the loop")


async def test_when_statements_keep_waiting_for_the_disk_batches_go_to_the_thread_for_a_while(
    writer: SerialWriter, clock: Clock
) -> None:
    inserts = Inserts()
    bulk = inserts.bulk()
    loop_thread = threading.get_ident()

    slow = await until_one_runs_on_the_writer_thread(writer, bulk, inserts)
    await writer.run_bulk(bulk, 1)
    clock.now += THREAD_SECONDS / 2
    await writer.run_bulk(bulk, 2)
    clock.now += THREAD_SECONDS / 2
    await writer.run_bulk(bulk, 3)

    other_thread = await writer_thread(writer)
    assert slow > 2  # one slow statement, or two, is not yet a slow disk
    assert inserts.threads[: slow - 1] == [loop_thread] * (slow - 1)
    assert inserts.threads[slow - 1 :] == [other_thread, other_thread, other_thread, loop_thread]
    assert await stored(writer) == [*[SLOW] * slow, 1, 2, 3]


async def test_a_stall_among_quick_statements_keeps_batches_on_the_loop(
    writer: SerialWriter,
) -> None:
    """A checkpoint or a preemption now and then, however long, is not a slow disk."""
    inserts = Inserts()
    bulk = inserts.bulk()

    for value in range(10):
        await writer.run_bulk(bulk, STALL if value % 5 == 0 else value)

    assert inserts.threads == [threading.get_ident()] * 10


async def test_waits_on_the_writer_thread_do_not_send_later_batches_there(
    writer: SerialWriter,
) -> None:
    """Only a wait on the loop's own thread is the loop's to avoid."""
    inserts = Inserts()
    bulk = inserts.bulk()

    for _ in range(10):  # each batch a slow statement beside a job: on the writer thread
        await asyncio.gather(writer.run_bulk(bulk, SLOW), writer_thread(writer))
    await writer.run_bulk(bulk, 1)

    assert threading.get_ident() not in inserts.threads[:-1]
    assert inserts.threads[-1] == threading.get_ident()
