"""The single SQLite writer: one connection, one thread, group commit.

Every write is a *job*: a plain function run on the writer thread against the write
connection. Jobs that arrive while a batch is being committed form the next batch, so under
load many jobs share one fsync and at rest a job is committed at once (no collection window;
docs/perf-baseline: a fixed window halves throughput at low concurrency). The next batch starts
when the event loop gets round to it, which under load lets more jobs share it: a writer thread
that looped on its own was measured to commit twice as many smaller batches for the same
throughput, at about 20 % more CPU per request.

Before it takes a batch, the event loop runs ``GATHER_ITERATIONS`` more iterations, so that the
requests already on the loop (read, but still being parsed and verified) join this batch instead
of waiting for the next. It is a count of iterations, not a time: at rest each takes
microseconds, under load each runs whatever the loop has ready. Every batch costs a hand-off to
this thread and back, and on some machines waking another thread is slow: there it was measured
to cut the event loop's waits from 0.66 to 0.14 per notification at 8 connections, with 16 %
more throughput and a lower p99 (bench/README.md).

Each job runs inside its own SAVEPOINT: a job that raises is rolled back alone and its
exception is returned to its caller, while the rest of the batch commits. A job whose refusals
all come before its first write may skip the savepoint (``isolated=False``): two statements
fewer per job, and each statement costs the writer a wait for the GIL. Such a job that raises
having changed nothing (the connection's ``total_changes`` tells; SQLite undoes a statement it
refuses by itself) fails alone; one that raises after changing something cannot be undone
alone, so it fails the whole batch. (``total_changes`` counts a statement once it has run to
its end: such a job reads every row its writes return before it may raise.) A failure of the
transaction itself (busy, read-only, disk full, I/O error) fails every job of the batch with
``StorageUnavailable``: nothing of it was committed, so callers may safely retry.

Jobs of one kind can also be written together: ``run_bulk`` hands the pending items of one
``BulkWrite`` to one call per chunk of ``max_items``, which writes them with one statement, in a
savepoint. What that saves is not SQLite's work but the GIL: every statement step releases it,
and this thread then waits to take it back from a busy event loop. Inserting a batch of
notifications with one statement (two steps) each made the writer's time per batch under load
six to seven times its time alone; with a few statements per chunk it no longer grows with the
batch (bench/README.md).

A ``one_write`` bulk write changes the database with at most one statement, and writing an item
again changes nothing. Its chunks need no savepoint, and a batch that is a single such chunk is
that statement alone, with no BEGIN and no COMMIT: SQLite makes one statement atomic and durable
by itself. Only such a batch can fail after its statement committed (a bug after the write, or a
read after it that fails): its callers are then told the store is unavailable although their
items are stored, and their retry finds them stored. If SQLite refuses the statement (and undoes
it), the batch is written again the usual way, where each item is tried alone.

Why not aiosqlite for writes: it hops to its thread once per call; a batch needs BEGIN,
N jobs and COMMIT in one hop, which aiosqlite offers no public way to do.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from storage.errors import StorageUnavailable

logger = logging.getLogger(__name__)

# Event-loop iterations between the first pending job and taking the batch (see above): 3
# gathered about half of what 6 did at 8 connections, and 12 no more than 6.
GATHER_ITERATIONS = 6

T = TypeVar("T")
Item = TypeVar("Item")
WriteJob = Callable[[sqlite3.Connection], T]


@dataclass(frozen=True, slots=True)
class BulkWrite(Generic[Item, T]):
    """A kind of write that many items share: ``apply`` writes up to ``max_items`` of them
    (with one write statement: the point) and returns one result per item, in order."""

    name: str
    apply: Callable[[sqlite3.Connection, Sequence[Item]], list[T]]
    max_items: int = 64
    # ``apply`` changes the database with at most one statement, and is idempotent: see above.
    one_write: bool = False


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    job: WriteJob[Any] | None = None  # a job of its own ...
    isolated: bool = True
    bulk: BulkWrite[Any, Any] | None = None  # ... or an item written with others of its kind
    item: Any = None


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

        ``isolated=False`` is only for jobs whose refusals all come before their first write:
        such a job that raises after changing something fails the whole batch (see above).
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(future, job=job, isolated=isolated))
        return await future

    async def run_bulk(self, bulk: BulkWrite[Item, T], item: Item) -> T:
        """Write ``item`` in the next batch, with every other pending item of ``bulk``; return
        its result once the batch is durable. An item that ``bulk.apply`` refuses fails alone."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(future, bulk=bulk, item=item))
        return await future

    def _enqueue(self, pending: _Pending) -> None:
        self._pending.append(pending)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_while_pending())

    async def maintain(self, job: WriteJob[T]) -> T:
        """Run ``job`` on the writer thread between batches, outside any transaction
        (pragmas such as ``query_only``, checkpoints)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, job, self._connection)

    async def _flush_while_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                for _ in range(GATHER_ITERATIONS):  # let the jobs on their way join this batch
                    await asyncio.sleep(0)
                batch, self._pending = self._pending, []
                started = time.perf_counter()
                outcomes = await loop.run_in_executor(self._thread, self._apply, batch)
                self.batches += 1
                self.jobs += len(batch)
                if self.observe is not None:
                    self.observe(time.perf_counter() - started, len(batch))
                for pending, (ok, value) in zip(batch, outcomes, strict=True):
                    if pending.future.done():
                        continue
                    if ok:
                        pending.future.set_result(value)
                    else:
                        pending.future.set_exception(value)
        finally:
            self._flusher = None

    def _apply(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        bulk = batch[0].bulk
        if (
            bulk is not None
            and bulk.one_write
            and not self._connection.in_transaction  # else the statement would not commit
            and len(batch) <= bulk.max_items
            and all(pending.bulk is bulk for pending in batch)
        ):
            outcomes = self._apply_one_statement(bulk, [pending.item for pending in batch])
            if outcomes is not None:
                return outcomes
        return self._apply_in_transaction(batch)

    def _apply_one_statement(
        self, bulk: BulkWrite[Any, Any], items: list[Any]
    ) -> list[tuple[bool, Any]] | None:
        """A batch that is one chunk of a ``one_write`` bulk write, as its statement alone
        (committed by SQLite); None when SQLite refused the statement and undid it."""
        try:
            results = _together(bulk, items)(self._connection)
        except sqlite3.IntegrityError:
            return None
        except (sqlite3.Error, _BatchFailed) as error:
            logger.warning("write of %d %s failed: %s", len(items), bulk.name, _describe(error))
            message = f"store unavailable: {_describe(error)}"
            return [(False, StorageUnavailable(message)) for _ in items]
        except Exception:  # a bug: the statement may stand, which a retry finds
            logger.exception("write of %d %s failed", len(items), bulk.name)
            return [(False, StorageUnavailable("store unavailable: internal error")) for _ in items]
        return [(True, result) for result in results]

    def _apply_in_transaction(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        connection = self._connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            outcomes = self._apply_all(connection, batch)
            connection.execute("COMMIT")
        except (sqlite3.Error, _BatchFailed) as error:
            self._rollback()
            logger.warning("write batch of %d failed: %s", len(batch), _describe(error))
            message = f"store unavailable: {_describe(error)}"
            return [(False, StorageUnavailable(message)) for _ in batch]
        except Exception:  # a bug outside any job: fail the batch, never leave it hanging
            self._rollback()
            logger.exception("write batch of %d failed", len(batch))
            return [(False, StorageUnavailable("store unavailable: internal error")) for _ in batch]
        return outcomes

    def _apply_all(
        self, connection: sqlite3.Connection, batch: list[_Pending]
    ) -> list[tuple[bool, Any]]:
        """Jobs in arrival order, then each kind of bulk item in chunks (the jobs of a batch
        arrived concurrently: none of them may depend on another's order)."""
        outcomes: list[tuple[bool, Any]] = [(False, None)] * len(batch)
        kinds: dict[BulkWrite[Any, Any], list[int]] = {}
        for index, pending in enumerate(batch):
            if pending.bulk is not None:
                kinds.setdefault(pending.bulk, []).append(index)
            else:
                assert pending.job is not None
                outcomes[index] = self._apply_one(connection, pending.job, pending.isolated)
        for bulk, indexes in kinds.items():
            for start in range(0, len(indexes), bulk.max_items):
                chunk = indexes[start : start + bulk.max_items]
                items = [batch[index].item for index in chunk]
                chunk_outcomes = self._apply_chunk(connection, bulk, items)
                for index, outcome in zip(chunk, chunk_outcomes, strict=True):
                    outcomes[index] = outcome
        return outcomes

    def _apply_chunk(
        self, connection: sqlite3.Connection, bulk: BulkWrite[Any, Any], items: list[Any]
    ) -> list[tuple[bool, Any]]:
        """All items at once, in one savepoint (none for a ``one_write``); if that is refused
        (and undone), each item again in a savepoint of its own, so that only the items at
        fault fail."""
        outcome = self._apply_one(connection, _together(bulk, items), isolated=not bulk.one_write)
        if outcome[0]:
            return [(True, result) for result in outcome[1]]
        if len(items) == 1:
            return [outcome]
        return [self._apply_one(connection, _alone(bulk, item), isolated=True) for item in items]

    @staticmethod
    def _apply_one(
        connection: sqlite3.Connection, job: WriteJob[Any], isolated: bool
    ) -> tuple[bool, Any]:
        """Run one job; a job that fails is undone alone by its savepoint, a storage error fails
        the whole batch. A job without a savepoint fails alone only if it changed nothing (SQLite
        undoes a statement it refuses); one that fails after changing something fails the batch.
        """
        if isolated:
            connection.execute("SAVEPOINT job")
        changes = connection.total_changes
        try:
            value = job(connection)
        except sqlite3.Error as error:
            if not isinstance(error, sqlite3.IntegrityError):
                raise _BatchFailed(_describe(error)) from error
            failure: Exception = error
        except _BatchFailed:
            raise
        except Exception as error:  # a domain refusal raised by the job itself
            failure = error
        else:
            if isolated:
                connection.execute("RELEASE job")
            return True, value
        if isolated:
            connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
        elif connection.total_changes != changes:  # what it wrote cannot be undone alone
            raise _BatchFailed(f"a job failed after writing: {type(failure).__name__}") from failure
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


def _together(bulk: BulkWrite[Item, T], items: list[Item]) -> WriteJob[list[T]]:
    """A chunk of a bulk write as one job, which fails (and is undone) unless it answers one
    result per item."""

    def job(connection: sqlite3.Connection) -> list[T]:
        results = bulk.apply(connection, items)
        if len(results) != len(items):
            raise _BatchFailed(f"{bulk.name} returned {len(results)} results for {len(items)}")
        return results

    return job


def _alone(bulk: BulkWrite[Item, T], item: Item) -> WriteJob[T]:
    """One item of a bulk write as a job of its own."""
    return _first(_together(bulk, [item]))


def _first(job: WriteJob[list[T]]) -> WriteJob[T]:
    return lambda connection: job(connection)[0]


def _describe(error: BaseException) -> str:
    if isinstance(error, _BatchFailed):  # already described where the job failed
        return str(error)
    name = getattr(error, "sqlite_errorname", None) or type(error).__name__
    return f"{name}: {error}"
