"""The single SQLite writer: one connection, one thread, group commit.

Every write is a *job*: a plain function run on the writer thread against the write
connection. Jobs that arrive while a batch is being committed form the next batch, so under
load many jobs share one fsync and at rest a job is committed at once (no collection window;
docs/perf-baseline: a fixed window halves throughput at low concurrency). The next batch starts
when the event loop gets round to it, which under load lets more jobs share it: a writer thread
that looped on its own was measured to commit twice as many smaller batches for the same
throughput, at about 20 % more CPU per request.

Each job runs inside its own SAVEPOINT: a job that raises is rolled back alone and its
exception is returned to its caller, while the rest of the batch commits. A job that makes at
most one write statement may skip the savepoint (``isolated=False``): SQLite already undoes a
failed statement on its own, and two statements fewer per job matter on the intake hot path.
A failure of the transaction itself (busy, read-only, disk full, I/O error) fails every job of
the batch with ``StorageUnavailable``: nothing of it was committed, so callers may safely retry.

Why not aiosqlite for writes: it hops to its thread once per call; a batch needs BEGIN,
N jobs and COMMIT in one hop, which aiosqlite offers no public way to do.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from storage.errors import StorageUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")
WriteJob = Callable[[sqlite3.Connection], T]
_Pending = tuple[WriteJob[Any], "asyncio.Future[Any]", bool]


class _BatchFailed(Exception):
    """A storage error inside a job: the whole transaction is abandoned."""


class SerialWriter:
    """Owns the write connection; every use of it happens on its one thread."""

    @classmethod
    async def open(cls, connect: Callable[[], sqlite3.Connection]) -> SerialWriter:
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
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.jobs = 0
        # Called with (seconds, jobs) after each batch: how long the commit path took.
        self.observe: Callable[[float, int], None] | None = None

    async def run(self, job: WriteJob[T], *, isolated: bool = True) -> T:
        """Run ``job`` in the next batch; return its result once the batch is durable.

        ``isolated=False`` is only for jobs with at most one write statement (see above).
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future, isolated))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_while_pending())
        return await future

    async def maintain(self, job: WriteJob[T]) -> T:
        """Run ``job`` on the writer thread between batches, outside any transaction
        (pragmas such as ``query_only``, checkpoints)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, job, self._connection)

    async def _flush_while_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                started = time.perf_counter()
                outcomes = await loop.run_in_executor(self._thread, self._apply, batch)
                self.batches += 1
                self.jobs += len(batch)
                if self.observe is not None:
                    self.observe(time.perf_counter() - started, len(batch))
                for (_, future, _), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flusher = None

    def _apply(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            outcomes = [self._apply_one(connection, job, isolated) for job, _, isolated in batch]
            connection.execute("COMMIT")
        except (sqlite3.Error, _BatchFailed) as error:
            self._rollback()
            logger.warning("write batch of %d failed: %s", len(batch), _describe(error))
            message = f"store unavailable: {_describe(error)}"
            return [(False, StorageUnavailable(message)) for _ in batch]
        return outcomes

    @staticmethod
    def _apply_one(
        connection: sqlite3.Connection, job: WriteJob[Any], isolated: bool
    ) -> tuple[bool, Any]:
        """Run one job; a job that fails is undone alone (by its savepoint, or by SQLite itself
        for a single-statement job), a storage error fails the whole batch."""
        if isolated:
            connection.execute("SAVEPOINT job")
        try:
            value = job(connection)
        except sqlite3.Error as error:
            if not isinstance(error, sqlite3.IntegrityError):
                raise _BatchFailed(_describe(error)) from error
            failure: Exception = error
        except Exception as error:  # a domain refusal raised by the job itself
            failure = error
        else:
            if isolated:
                connection.execute("RELEASE job")
            return True, value
        if isolated:
            connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
        return False, failure

    def _rollback(self) -> None:
        try:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
        except sqlite3.Error as error:
            logger.warning("rollback failed: %s", _describe(error))

    async def close(self) -> None:
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._connection.close)
        self._thread.shutdown(wait=True)


def _describe(error: BaseException) -> str:
    if isinstance(error, _BatchFailed):  # already described where the job failed
        return str(error)
    name = getattr(error, "sqlite_errorname", None) or type(error).__name__
    return f"{name}: {error}"
