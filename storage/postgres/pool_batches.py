"""What the PostgreSQL store's group commits share (``batches`` for notifications, ``outcomes``
for attempt outcomes): callers waiting in a ``storage.group_commit`` batch, the batch written on
the pool, each caller then answered with its own outcome (a result, or the error that is its
alone), and the time of every write handed to the observer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from storage.group_commit import GroupCommit
from storage.postgres.connection import Job, Pool, T, transact


class Waiter(Protocol):
    """One caller's item in a batch: what it waits on."""

    @property
    def future(self) -> asyncio.Future[Any]: ...


Item = TypeVar("Item", bound=Waiter)


class PoolBatches(Generic[Item]):
    """A group commit on ``pool``: subclasses write a batch (``write``), one answer per item."""

    # Batches written at once, each on a connection of its own: a second batch is written while
    # the first waits for its WAL flush (bench/README.md, "PostgreSQL").
    in_flight = 2

    def __init__(
        self, pool: Pool, retries: int, observe: Callable[[float, int], None] | None = None
    ) -> None:
        self._pool = pool
        self._retries = retries
        self._group: GroupCommit[Item] = GroupCommit(self._commit, in_flight=self.in_flight)
        self.observe = observe  # called with (seconds, items) after each write

    @property
    def group(self) -> GroupCommit[Item]:
        """The batching itself (its counters, for tests and the bench)."""
        return self._group

    async def drain(self) -> None:
        """Let every queued item be written (or fail)."""
        await self._group.drain()

    async def write(self, batch: list[Item]) -> Sequence[Any]:
        """Each item's answer, in order: its result, or the exception that is its alone."""
        raise NotImplementedError

    async def _commit(self, batch: list[Item]) -> None:
        answers = await self.write(batch)
        for item, answer in zip(batch, answers, strict=True):
            if item.future.done():  # its caller went away
                continue
            if isinstance(answer, BaseException):
                item.future.set_exception(answer)
            else:
                item.future.set_result(answer)

    async def run(self, job: Job[T], items: int, *, atomic: bool = True) -> T:
        """``job`` on a pooled connection (retried as ``transact`` says), its time observed."""
        started = time.perf_counter()
        answer = await transact(self._pool, job, retries=self._retries, atomic=atomic)
        if self.observe is not None:
            self.observe(time.perf_counter() - started, items)
        return answer
