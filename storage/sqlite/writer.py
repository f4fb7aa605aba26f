"""The single SQLite writer: one connection, group commit, a thread for what the loop must not do.

Every write is a *job*: a plain function run against the write connection (on which thread, the
section below says). Jobs are gathered into batches by ``storage.group_commit`` (the rule
PostgreSQL's notification intake shares): jobs that arrive while a batch is being committed form
the next batch, so under load many jobs share one fsync and at rest a job is committed at once.
One batch is in flight at a time. The next batch starts when the event loop gets round to it,
which under load lets more jobs share it: a writer thread that looped on its own committed more,
smaller batches for the same throughput, at more CPU per request. A batch for the writer thread
costs a hand-off to it and back, and on some machines waking another thread is slow: gathering
the requests already on the event loop first (``GATHER_ITERATIONS``) cut the event loop's waits
per notification there, for more throughput and a lower p99 (bench/README.md).

How a batch is applied (a savepoint per job, bulk writes in chunks, a batch of one chunk as its
statement alone) is ``storage.sqlite.batch``.

**Where a batch is applied.** A batch that is one chunk of a ``one_write`` bulk write (the
notifications of one burst: one statement of bounded cost) is applied on the event loop's own
thread; every other batch on the writer thread. Under load the requests move as a convoy: the
batch holds nearly every request in flight, and the loop has little to do until it is durable.
Handed to the writer thread, the batch then waits for two thread wake-ups (on a VM each can be
an exit to the hypervisor) and for the GIL at each step back into Python, while the loop sits
idle; on the loop's thread the statement runs at once, and the loop answers and takes up the
next requests as soon as it is durable (bench/README.md). What the loop must not do is wait on
a slow disk: once the statements on its thread keep waiting (wall time less the thread's CPU
time, smoothed) longer than ``DISK_WAIT_LIMIT_SECONDS``, every batch goes to the writer thread
for ``THREAD_SECONDS``, after which the loop tries again. A batch also goes to the thread while a
``maintain`` job holds the connection there.

Why not aiosqlite for writes: it hops to its thread once per call; a batch needs BEGIN,
N jobs and COMMIT in one hop, which aiosqlite offers no public way to do. The connection is used
by two threads, the loop's and the writer's, never at once: one batch is in flight at a time, and
no batch runs on the loop while a ``maintain`` job is out.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from storage.group_commit import GATHER_ITERATIONS, GroupCommit
from storage.sqlite.batch import BulkWrite, Outcome, Pending, WriteJob, apply_batch, is_one_chunk

T = TypeVar("T")
Item = TypeVar("Item")

__all__ = ["GATHER_ITERATIONS", "BulkWrite", "SerialWriter", "WriteJob"]

# How long the statements on the event loop's thread may wait for the disk, smoothed over the
# last few (each counted up to twice the limit, the newest weighing DISK_WAIT_WEIGHT), before
# batches go to the writer thread, and for how long they then do (see the module docstring). A
# wait of its own (a checkpoint, the loop's thread preempted) does not send them; a disk that
# keeps the loop waiting does, within a few statements.
DISK_WAIT_LIMIT_SECONDS = 0.002
DISK_WAIT_WEIGHT = 0.2
THREAD_SECONDS = 1.0


class SerialWriter:
    """Owns the write connection: every use of it is a batch, on the event loop's thread or on
    the writer thread, or a ``maintain`` job on the writer thread."""

    @classmethod
    async def open(
        cls,
        connect: Callable[[], sqlite3.Connection],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> SerialWriter:
        """Connect on the writer's own thread; ``clock`` times the writer thread's turns after
        a slow disk (tests give their own)."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="subgate-writer")
        try:
            connection = await asyncio.get_running_loop().run_in_executor(thread, connect)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(connection, thread, clock=clock)

    def __init__(
        self,
        connection: sqlite3.Connection,
        thread: ThreadPoolExecutor,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connection = connection
        self._thread = thread
        self._group = GroupCommit(self._commit)
        self._clock = clock
        self._maintaining = 0  # ``maintain`` jobs out on the writer thread
        self._disk_wait = 0.0  # the smoothed wait of the statements on the loop's thread
        self._thread_until = -math.inf  # after a slow disk: batches go to the thread until then
        self.batches_on_loop = 0  # batches applied on the event loop's thread, for tests
        # Called with (seconds, jobs) after each batch: how long the commit path took.
        self.observe: Callable[[float, int], None] | None = None

    async def run(self, job: WriteJob[T], *, isolated: bool = True) -> T:
        """Run ``job`` in the next batch; return its result once the batch is durable.

        ``isolated=False`` is only for jobs whose refusals all come before their first write:
        such a job that raises after changing something fails the whole batch
        (``storage.sqlite.batch``).
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._enqueue(Pending(future, job=job, isolated=isolated))
        return await future

    async def run_bulk(self, bulk: BulkWrite[Item, T], item: Item) -> T:
        """Write ``item`` in the next batch, with every other pending item of ``bulk``; return
        its result once the batch is durable. An item that ``bulk.apply`` refuses fails alone."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._enqueue(Pending(future, bulk=bulk, item=item))
        return await future

    def _enqueue(self, pending: Pending) -> None:
        self._group.add(pending)

    @property
    def batches(self) -> int:
        """Batches committed (or failed) so far."""
        return self._group.batches

    @property
    def jobs(self) -> int:
        """Jobs and bulk items those batches held."""
        return self._group.writes

    async def maintain(self, job: WriteJob[T]) -> T:
        """Run ``job`` on the writer thread between batches, outside any transaction
        (pragmas such as ``query_only``, checkpoints)."""
        loop = asyncio.get_running_loop()
        self._maintaining += 1
        try:
            return await loop.run_in_executor(self._thread, job, self._connection)
        finally:
            self._maintaining -= 1

    async def _commit(self, batch: list[Pending]) -> None:
        """Apply ``batch`` where the module docstring says; settle each job's future with its
        outcome."""
        started = time.perf_counter()
        if self._on_loop(batch):
            outcomes = self._apply_on_loop(batch)
        else:
            loop = asyncio.get_running_loop()
            outcomes = await loop.run_in_executor(
                self._thread, apply_batch, self._connection, batch
            )
        if self.observe is not None:
            self.observe(time.perf_counter() - started, len(batch))
        for pending, (ok, value) in zip(batch, outcomes, strict=True):
            if pending.future.done():
                continue
            if ok:
                pending.future.set_result(value)
            else:
                pending.future.set_exception(value)

    def _on_loop(self, batch: list[Pending]) -> bool:
        return not self._maintaining and self._clock() >= self._thread_until and is_one_chunk(batch)

    def _apply_on_loop(self, batch: list[Pending]) -> list[Outcome]:
        """``apply_batch`` on this thread; statements that keep waiting for the disk send the
        next batches to the writer thread for a while."""
        wall, cpu = time.perf_counter(), time.thread_time()
        outcomes = apply_batch(self._connection, batch)
        waited = (time.perf_counter() - wall) - (time.thread_time() - cpu)
        counted = min(waited, 2 * DISK_WAIT_LIMIT_SECONDS)
        self._disk_wait += DISK_WAIT_WEIGHT * (counted - self._disk_wait)
        if self._disk_wait > DISK_WAIT_LIMIT_SECONDS:
            self._thread_until = self._clock() + THREAD_SECONDS
        self.batches_on_loop += 1
        return outcomes

    async def close(self) -> None:
        """Let pending batches finish, then close the connection on its thread."""
        await self._group.drain()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._connection.close)
        self._thread.shutdown(wait=True)
