"""How the single writer applies one batch of jobs on its thread: one transaction, a savepoint
per job, bulk items in chunks.

Each job runs inside its own SAVEPOINT: a job that raises is rolled back alone and its
exception is returned to its caller, while the rest of the batch commits. A job whose refusals
all come before its first write may skip the savepoint (``isolated=False``): two statements
fewer per job, and each statement costs the writer a wait for the GIL. Such a job that raises
having changed nothing (the connection's ``total_changes`` tells; SQLite undoes a statement it
refuses by itself) fails alone; one that raises after changing something cannot be undone
alone, so it fails the whole batch. (``total_changes`` counts a statement once it has run to
its end: such a job reads every row its writes return before it may raise. It also counts the
rows a trigger wrote for a statement SQLite then refused, although SQLite undid them with the
statement: a ``one_write`` chunk that SQLite refuses still changed nothing.) A failure of the
transaction itself (busy, read-only, disk full, I/O error) fails every job of the batch with
``StorageUnavailable``: nothing of it was committed, so callers may safely retry.

Jobs of one kind can also be written together: the pending items of one ``BulkWrite`` go to one
call per chunk of ``max_items``, which writes them with one statement, in a savepoint. What that
saves is not SQLite's work but the GIL: every statement step releases it, and the writer thread
then waits to take it back from a busy event loop; with a few statements per chunk, the writer's
time per batch no longer grows with the batch (bench/README.md).

A ``one_write`` bulk write changes the database with at most one statement, and writing an item
again changes nothing. Its chunks need no savepoint, and a batch that is a single such chunk is
that statement alone, with no BEGIN and no COMMIT: SQLite makes one statement atomic and durable
by itself. Only such a batch can fail after its statement committed (a bug after the write, or a
read after it that fails): its callers are then told the store is unavailable although their
items are stored, and their retry finds them stored. If SQLite refuses the statement (and undoes
it), the batch is written again the usual way, where each item is tried alone.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from storage.errors import StorageUnavailable

logger = logging.getLogger("storage.sqlite.writer")  # the writer's log, as it always was

T = TypeVar("T")
Item = TypeVar("Item")
WriteJob = Callable[[sqlite3.Connection], T]
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception for its caller)


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
class Pending:
    """One write waiting for its batch: a job of its own, or an item of a bulk write."""

    future: asyncio.Future[Any]
    job: WriteJob[Any] | None = None  # a job of its own ...
    isolated: bool = True
    bulk: BulkWrite[Any, Any] | None = None  # ... or an item written with others of its kind
    item: Any = None


class BatchFailed(Exception):
    """A storage error inside a job: the whole transaction is abandoned."""


def apply_batch(connection: sqlite3.Connection, batch: list[Pending]) -> list[Outcome]:
    """Every pending write of ``batch``, committed together; one outcome each, in order."""
    bulk = batch[0].bulk
    if (
        bulk is not None
        and bulk.one_write
        and not connection.in_transaction  # else the statement would not commit
        and len(batch) <= bulk.max_items
        and all(pending.bulk is bulk for pending in batch)
    ):
        outcomes = _apply_one_statement(connection, bulk, [pending.item for pending in batch])
        if outcomes is not None:
            return outcomes
    return _apply_in_transaction(connection, batch)


def _apply_one_statement(
    connection: sqlite3.Connection, bulk: BulkWrite[Any, Any], items: list[Any]
) -> list[Outcome] | None:
    """A batch that is one chunk of a ``one_write`` bulk write, as its statement alone
    (committed by SQLite); None when SQLite refused the statement and undid it."""
    try:
        results = _together(bulk, items)(connection)
    except sqlite3.IntegrityError:
        return None
    except (sqlite3.Error, BatchFailed) as error:
        logger.warning("write of %d %s failed: %s", len(items), bulk.name, describe(error))
        return _unavailable(len(items), describe(error))
    except Exception:  # a bug: the statement may stand, which a retry finds
        logger.exception("write of %d %s failed", len(items), bulk.name)
        return _unavailable(len(items), "internal error")
    return [(True, result) for result in results]


def _apply_in_transaction(connection: sqlite3.Connection, batch: list[Pending]) -> list[Outcome]:
    try:
        connection.execute("BEGIN IMMEDIATE")
        outcomes = _apply_all(connection, batch)
        connection.execute("COMMIT")
    except (sqlite3.Error, BatchFailed) as error:
        _rollback(connection)
        logger.warning("write batch of %d failed: %s", len(batch), describe(error))
        return _unavailable(len(batch), describe(error))
    except Exception:  # a bug outside any job: fail the batch, never leave it hanging
        _rollback(connection)
        logger.exception("write batch of %d failed", len(batch))
        return _unavailable(len(batch), "internal error")
    return outcomes


def _unavailable(count: int, why: str) -> list[Outcome]:
    return [(False, StorageUnavailable(f"store unavailable: {why}")) for _ in range(count)]


def _apply_all(connection: sqlite3.Connection, batch: list[Pending]) -> list[Outcome]:
    """Jobs in arrival order, then each kind of bulk item in chunks (the jobs of a batch
    arrived concurrently: none of them may depend on another's order)."""
    outcomes: list[Outcome] = [(False, None)] * len(batch)
    kinds: dict[BulkWrite[Any, Any], list[int]] = {}
    for index, pending in enumerate(batch):
        if pending.bulk is not None:
            kinds.setdefault(pending.bulk, []).append(index)
        else:
            assert pending.job is not None
            outcomes[index] = _apply_one(connection, pending.job, pending.isolated)
    for bulk, indexes in kinds.items():
        for start in range(0, len(indexes), bulk.max_items):
            chunk = indexes[start : start + bulk.max_items]
            items = [batch[index].item for index in chunk]
            chunk_outcomes = _apply_chunk(connection, bulk, items)
            for index, outcome in zip(chunk, chunk_outcomes, strict=True):
                outcomes[index] = outcome
    return outcomes


def _apply_chunk(
    connection: sqlite3.Connection, bulk: BulkWrite[Any, Any], items: list[Any]
) -> list[Outcome]:
    """All items at once, in one savepoint (none for a ``one_write``); if that is refused
    (and undone), each item again in a savepoint of its own, so that only the items at
    fault fail."""
    together = _together(bulk, items)
    outcome = _apply_one(connection, together, not bulk.one_write, one_write=bulk.one_write)
    if outcome[0]:
        return [(True, result) for result in outcome[1]]
    if len(items) == 1:
        return [outcome]
    return [_apply_one(connection, _alone(bulk, item), isolated=True) for item in items]


def _apply_one(
    connection: sqlite3.Connection, job: WriteJob[Any], isolated: bool, *, one_write: bool = False
) -> Outcome:
    """Run one job; a job that fails is undone alone by its savepoint, a storage error fails
    the whole batch. A job without a savepoint fails alone only if it changed nothing (SQLite
    undoes a statement it refuses); one that fails after changing something fails the batch.
    A ``one_write`` job that SQLite refused changed nothing, whatever ``total_changes`` says.
    """
    if isolated:
        connection.execute("SAVEPOINT job")
    changes = connection.total_changes
    try:
        value = job(connection)
    except sqlite3.Error as error:
        if not isinstance(error, sqlite3.IntegrityError):
            raise BatchFailed(describe(error)) from error
        failure: Exception = error
    except BatchFailed:
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
    elif connection.total_changes != changes and not (
        one_write and isinstance(failure, sqlite3.IntegrityError)
    ):  # what it wrote cannot be undone alone
        raise BatchFailed(f"a job failed after writing: {type(failure).__name__}") from failure
    return False, failure


def _rollback(connection: sqlite3.Connection) -> None:
    try:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
    except sqlite3.Error as error:
        logger.warning("rollback failed: %s", describe(error))


def _together(bulk: BulkWrite[Item, T], items: list[Item]) -> WriteJob[list[T]]:
    """A chunk of a bulk write as one job, which fails (and is undone) unless it answers one
    result per item."""

    def job(connection: sqlite3.Connection) -> list[T]:
        results = bulk.apply(connection, items)
        if len(results) != len(items):
            raise BatchFailed(f"{bulk.name} returned {len(results)} results for {len(items)}")
        return results

    return job


def _alone(bulk: BulkWrite[Item, T], item: Item) -> WriteJob[T]:
    """One item of a bulk write as a job of its own."""
    return _first(_together(bulk, [item]))


def _first(job: WriteJob[list[T]]) -> WriteJob[T]:
    return lambda connection: job(connection)[0]


def describe(error: BaseException) -> str:
    """An error as the log and ``StorageUnavailable`` say it: SQLite's own error name first."""
    if isinstance(error, BatchFailed):  # already described where the job failed
        return str(error)
    name = getattr(error, "sqlite_errorname", None) or type(error).__name__
    return f"{name}: {error}"
