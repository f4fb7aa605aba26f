"""Group commit, store-neutral: what arrives while a commit is in flight forms the next batch.

Both stores write a burst of notifications with one commit instead of one each: each write is
queued, and a flusher task takes everything queued as one batch and hands it to the store's
``commit``, which resolves each write's future once the batch is durable. While a batch is
being committed, new writes queue up and form the next one, so under load many writes share
one WAL flush and at rest a write is committed at once (no collection window: a fixed one costs
throughput at low concurrency).

Before it takes a batch, the flusher lets the event loop run ``gather_iterations`` more
iterations, so that the requests already on the loop (read, but still being parsed and
verified) join this batch instead of waiting for the next. It is a count of iterations, not a
time: at rest each takes microseconds, under load each runs whatever the loop has ready
(bench/README.md measured the count for SQLite's writer).

SQLite has one writer, so one batch is in flight at a time (``in_flight=1``). PostgreSQL takes
several transactions at once: a second batch may be committed on another connection while the
first waits for its WAL flush (``storage.postgres.batches``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

GATHER_ITERATIONS = 6  # fewer gathered less on SQLite, more gathered no more (bench/README.md)

Pending = TypeVar("Pending")
Commit = Callable[[list[Pending]], Awaitable[None]]


class GroupCommit(Generic[Pending]):
    """Queues writes and hands them to ``commit`` in batches (see the module docstring).

    ``commit`` must settle every write of its batch (each caller waits on its own future) and
    must not raise: a batch that fails is its writes failing, each told why.
    """

    def __init__(
        self,
        commit: Commit[Pending],
        *,
        in_flight: int = 1,
        gather_iterations: int = GATHER_ITERATIONS,
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self._commit = commit
        self._in_flight = in_flight
        self._gather_iterations = gather_iterations
        self._pending: list[Pending] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self.batches = 0  # batches committed (or failed), for tests and the bench
        self.writes = 0

    def add(self, pending: Pending) -> None:
        """Queue ``pending`` for the next batch; start a flusher if fewer than ``in_flight`` run."""
        self._pending.append(pending)
        if len(self._flushers) < self._in_flight:
            flusher: asyncio.Task[None] = asyncio.create_task(self._flush_while_pending())
            self._flushers.add(flusher)

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch in flight."""
        return not self._flushers and not self._pending

    async def drain(self) -> None:
        """Return once every queued write has been committed (or failed)."""
        while self._flushers:
            await asyncio.shield(next(iter(self._flushers)))

    async def _flush_while_pending(self) -> None:
        try:
            while self._pending:
                for _ in range(self._gather_iterations):  # let the writes on their way join
                    await asyncio.sleep(0)
                batch, self._pending = self._pending, []
                if not batch:  # another flusher took them meanwhile
                    return
                self.batches += 1
                self.writes += len(batch)
                await self._commit(batch)
        finally:  # at once, not in a done callback: a write queued meanwhile needs a flusher
            task = asyncio.current_task()
            if task is not None:
                self._flushers.discard(task)
