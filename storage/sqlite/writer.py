"""The single SQLite writer: one connection, one thread, group commit.

Every write is a *job*: a plain function run on the writer thread against the write
connection. Jobs are gathered into batches by ``storage.group_commit`` (the rule PostgreSQL's
notification intake shares): jobs that arrive while a batch is being committed form the next
batch, so under load many jobs share one fsync and at rest a job is committed at once. One batch
is in flight at a time. The next batch starts when the event loop gets round to it, which under
load lets more jobs share it: a writer thread that looped on its own committed more, smaller
batches for the same throughput, at more CPU per request. Every batch costs a hand-off to this
thread and back, and on some machines waking another thread is slow: gathering the requests
already on the event loop first (``GATHER_ITERATIONS``) cut the event loop's waits per
notification there, for more throughput and a lower p99 (bench/README.md).

How a batch is applied on the thread (a savepoint per job, bulk writes in chunks, a batch of one
chunk as its statement alone) is ``storage.sqlite.batch``.

Why not aiosqlite for writes: it hops to its thread once per call; a batch needs BEGIN,
N jobs and COMMIT in one hop, which aiosqlite offers no public way to do.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from storage.group_commit import GATHER_ITERATIONS, GroupCommit
from storage.sqlite.batch import BulkWrite, Pending, WriteJob, apply_batch

T = TypeVar("T")
Item = TypeVar("Item")

__all__ = ["GATHER_ITERATIONS", "BulkWrite", "SerialWriter", "WriteJob"]


class SerialWriter:
    """Owns the write connection; every use of it happens on its one thread."""

    @classmethod
    async def open(cls, connect: Callable[[], sqlite3.Connection]) -> SerialWriter:
        """Connect on the writer's own thread (the connection never leaves it)."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="subgate-writer")
        try:
            connection = await asyncio.get_running_loop().run_in_executor(thread, connect)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(connection, thread)

    def __init__(self, connection: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self._connection = connection
        self._thread = thread
        self._group = GroupCommit(self._commit)
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
        return await loop.run_in_executor(self._thread, job, self._connection)

    async def _commit(self, batch: list[Pending]) -> None:
        """Apply ``batch`` on the writer thread; settle each job's future with its outcome."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        outcomes = await loop.run_in_executor(self._thread, apply_batch, self._connection, batch)
        if self.observe is not None:
            self.observe(time.perf_counter() - started, len(batch))
        for pending, (ok, value) in zip(batch, outcomes, strict=True):
            if pending.future.done():
                continue
            if ok:
                pending.future.set_result(value)
            else:
                pending.future.set_exception(value)

    async def close(self) -> None:
        """Let pending batches finish, then close the connection on its thread."""
        await self._group.drain()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._connection.close)
        self._thread.shutdown(wait=True)
