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
from collections.abc import Sequence
from dataclasses import dataclass

from storage.errors import StorageUnavailable
from storage.models import ConsentEvent, NotificationRecord, RecordOutcome
from storage.postgres import lost_commits
from storage.postgres.intake_rows import Arrival, BatchAttempt, outcomes_of, write_batch
from storage.postgres.pool_batches import PoolBatches

Outcome = RecordOutcome | BaseException


@dataclass(frozen=True, slots=True)
class Waiting:
    """One notification waiting for its batch, and the caller waiting for its answer."""

    arrival: Arrival
    future: asyncio.Future[RecordOutcome]


class NotificationBatches(PoolBatches[Waiting]):
    """Writes notifications in batches on ``pool`` (see the module docstring)."""

    async def record(
        self, record: NotificationRecord, events: Sequence[ConsentEvent]
    ) -> RecordOutcome:
        """Store ``record`` in the next batch; its outcome once that batch is committed."""
        future: asyncio.Future[RecordOutcome] = asyncio.get_running_loop().create_future()
        self._group.add(Waiting(Arrival(record, tuple(events)), future))
        return await future

    async def write(self, batch: list[Waiting]) -> list[Outcome]:
        arrivals = [waiting.arrival for waiting in batch]
        if len(arrivals) == 1:
            return [await self._alone(arrivals[0])]
        return await self._together(arrivals)

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
        return await self.run(
            lambda connection: write_batch(connection, arrivals, attempt), len(arrivals)
        )

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
