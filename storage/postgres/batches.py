"""Group commit of notifications on PostgreSQL: one transaction, one WAL flush, per batch.

The notifications (and the consent events they imply) that arrive while a batch is being
committed form the next batch (``storage.group_commit``, the rule SQLite's writer uses too), and
each batch is written by ``intake_rows.write_batch`` in one READ COMMITTED transaction. Each
caller is answered once the COMMIT has returned: with ``synchronous_commit`` on (the server's
default, which the store does not change) that is once the batch is durable. Idempotency and
spend-once stay the database's (unique keys, row locks), so they hold across replicas.

A batch that fails is not its notifications' fault until shown so: each is written again in a
transaction of its own, so one row the database refuses fails alone. A connection lost around a
batch's COMMIT is first settled by ``lost_commits``: once the batch's server process has ended,
each key the batch inserted and finds stored is answered from the store; the rest are written
again alone. A notification alone whose commit was lost and is not found stored fails, as a
single write always did (the caller answers 503 and Alipay re-sends).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from storage.errors import StorageUnavailable
from storage.group_commit import GroupCommit
from storage.models import ConsentEvent, NotificationRecord, RecordOutcome
from storage.postgres import lost_commits
from storage.postgres.connection import Pool, transact
from storage.postgres.intake_rows import Arrival, BatchAttempt, outcomes_of, write_batch

# Batches committed at once, each on a connection of its own: a second batch is written while
# the first waits for its WAL flush (bench/README.md, "PostgreSQL").
IN_FLIGHT = 2
Outcome = RecordOutcome | BaseException


@dataclass(frozen=True, slots=True)
class Waiting:
    """One notification waiting for its batch, and the caller waiting for its answer."""

    arrival: Arrival
    future: asyncio.Future[RecordOutcome]


class NotificationBatches:
    """Writes notifications in batches on ``pool`` (see the module docstring)."""

    def __init__(
        self, pool: Pool, retries: int, observe: Callable[[float, int], None] | None = None
    ) -> None:
        self._pool = pool
        self._retries = retries
        self._group: GroupCommit[Waiting] = GroupCommit(self._commit, in_flight=IN_FLIGHT)
        self.observe = observe  # called with (seconds, notifications) after each transaction

    @property
    def group(self) -> GroupCommit[Waiting]:
        """The batching itself (its counters, for tests and the bench)."""
        return self._group

    async def record(
        self, record: NotificationRecord, events: Sequence[ConsentEvent]
    ) -> RecordOutcome:
        """Store ``record`` in the next batch; its outcome once that batch is committed."""
        future: asyncio.Future[RecordOutcome] = asyncio.get_running_loop().create_future()
        self._group.add(Waiting(Arrival(record, tuple(events)), future))
        return await future

    async def drain(self) -> None:
        """Let every queued notification be committed (or fail)."""
        await self._group.drain()

    async def _commit(self, batch: list[Waiting]) -> None:
        arrivals = [waiting.arrival for waiting in batch]
        if len(arrivals) == 1:
            outcomes = [await self._alone(arrivals[0])]
        else:
            outcomes = await self._together(arrivals)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.future.done():  # its caller went away
                continue
            if isinstance(outcome, BaseException):
                waiting.future.set_exception(outcome)
            else:
                waiting.future.set_result(outcome)

    async def _together(self, arrivals: list[Arrival]) -> list[Outcome]:
        """The batch in one transaction; after a failure, what landed, and the rest alone."""
        attempt = BatchAttempt()
        try:
            return list(await self._write(arrivals, attempt))
        except Exception as error:
            landed = await self._landed(arrivals, attempt, error)
        redo = [arrival for arrival in arrivals if arrival.key not in landed]
        again = iter(await asyncio.gather(*(self._alone(arrival) for arrival in redo)))
        done = iter(outcomes_of([a for a in arrivals if a.key in landed], landed, attempt.inserted))
        return [next(again) if a.key not in landed else next(done) for a in arrivals]

    async def _alone(self, arrival: Arrival) -> Outcome:
        """One notification in a transaction of its own; a lost commit settled by its key."""
        attempt = BatchAttempt()
        try:
            return (await self._write([arrival], attempt))[0]
        except Exception as error:
            landed = await self._landed([arrival], attempt, error)
            if arrival.key in landed:
                return outcomes_of([arrival], landed, attempt.inserted)[0]
            return error

    async def _write(self, arrivals: list[Arrival], attempt: BatchAttempt) -> list[RecordOutcome]:
        started = time.perf_counter()
        outcomes = await transact(
            self._pool,
            lambda connection: write_batch(connection, arrivals, attempt),
            retries=self._retries,
        )
        if self.observe is not None:
            self.observe(time.perf_counter() - started, len(arrivals))
        return outcomes

    async def _landed(
        self, arrivals: list[Arrival], attempt: BatchAttempt, error: Exception
    ) -> dict[tuple[str, str], int]:
        """The keys this failed attempt stored, as far as that can be known: none unless the
        connection was lost where the commit may have landed (``lost_commits``)."""
        if not (isinstance(error, StorageUnavailable) and lost_commits.is_ambiguous(error)):
            return {}
        keys = list({arrival.key: None for arrival in arrivals})
        stored = await lost_commits.settle(self._pool, attempt, keys)
        if stored is None:
            return {}
        return {key: id_ for key, id_ in stored.items() if attempt.inserted.get(key) == id_}
