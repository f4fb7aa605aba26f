"""Group commit of the hot writes of sending and reporting on PostgreSQL: each a savepoint.

Send reservations, attempts' starts and outcomes and subscribe-result reports are each one
short transaction of their own, whose cost is mostly its COMMIT's WAL flush. Those that arrive
while a batch is being committed form the next batch (``storage.group_commit``) and run one
after the other in one transaction, each inside a SAVEPOINT of its own: a job that refuses (a
``LedgerRefusal``, ``outbox.KeyTaken``) is rolled back to its savepoint alone and its caller gets
the refusal, while the rest commit. Each job is the same code under the same row locks as when it
ran alone, so spend-once and idempotency hold across replicas as before; locks are only held
until the batch's COMMIT.

A database error inside a job (a lock waited on too long, a deadlock that ``transact`` gave up
on, a refused row) fails the batch, which then rolled back whole: each job is run again in a
transaction of its own, so one job's fault never fails its neighbours. A connection lost where
the COMMIT may have landed is not retried: each caller gets ``StorageUnavailable``, as a single
transaction's caller would, and retries with its idempotency key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from storage.errors import StorageUnavailable
from storage.group_commit import GroupCommit
from storage.postgres.connection import DATABASE_ERRORS, Conn, Job, Pool, transact
from storage.postgres.lost_commits import is_ambiguous

T = TypeVar("T")
IN_FLIGHT = 2  # as for notifications (``storage.postgres.batches``)
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception for its caller)


@dataclass(frozen=True, slots=True)
class PendingJob:
    job: Job[Any]
    future: asyncio.Future[Any]


class JobBatches:
    """Runs transaction jobs in shared transactions on ``pool`` (see the module docstring)."""

    def __init__(
        self, pool: Pool, retries: int, observe: Callable[[float, int], None] | None = None
    ) -> None:
        self._pool = pool
        self._retries = retries
        self._group: GroupCommit[PendingJob] = GroupCommit(self._commit, in_flight=IN_FLIGHT)
        self.observe = observe  # called with (seconds, jobs) after each transaction

    @property
    def group(self) -> GroupCommit[PendingJob]:
        """The batching itself (its counters, for tests and the bench)."""
        return self._group

    async def run(self, job: Job[T]) -> T:
        """Run ``job`` in the next batch; its result once that batch has committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._group.add(PendingJob(job, future))
        return await future

    async def drain(self) -> None:
        """Let every queued job be committed (or fail)."""
        await self._group.drain()

    async def _commit(self, batch: list[PendingJob]) -> None:
        if len(batch) == 1:
            outcomes = [await self._alone(batch[0].job)]
        else:
            outcomes = await self._together(batch)
        for pending, (ok, value) in zip(batch, outcomes, strict=True):
            if pending.future.done():  # its caller went away
                continue
            if ok:
                pending.future.set_result(value)
            else:
                pending.future.set_exception(value)

    async def _together(self, batch: list[PendingJob]) -> list[Outcome]:
        started = time.perf_counter()
        try:
            outcomes = await transact(
                self._pool, lambda c: _each_in_savepoint(c, batch), retries=self._retries
            )
        except StorageUnavailable as error:
            if is_ambiguous(error):
                return [(False, error)] * len(batch)
            return list(await asyncio.gather(*(self._alone(p.job) for p in batch)))
        self._observed(started, len(batch))
        return outcomes

    async def _alone(self, job: Job[Any]) -> Outcome:
        started = time.perf_counter()
        try:
            value = await transact(self._pool, job, retries=self._retries)
        except Exception as error:  # a refusal or StorageUnavailable: its caller's to handle
            return False, error
        self._observed(started, 1)
        return True, value

    def _observed(self, started: float, jobs: int) -> None:
        if self.observe is not None:
            self.observe(time.perf_counter() - started, jobs)


async def _each_in_savepoint(connection: Conn, batch: list[PendingJob]) -> list[Outcome]:
    """Every job in a savepoint of its own; a database error fails them all (``transact``
    rolls the transaction back)."""
    outcomes: list[Outcome] = []
    for pending in batch:
        try:
            async with connection.transaction():  # nested: a savepoint
                value = await pending.job(connection)
        except DATABASE_ERRORS:
            raise
        except Exception as error:  # a refusal raised by the job itself, undone alone
            outcomes.append((False, error))
        else:
            outcomes.append((True, value))
    return outcomes
