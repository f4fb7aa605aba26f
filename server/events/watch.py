"""Knowing, without polling hard, that new events were written.

Every commit may have written events (the triggers write them with their causes), but most
commits write none, and the delivery workers' own commits must not wake them in a loop. So a
commit only pokes the watch; the watch then reads the log's last position (one read for a burst
of commits) and wakes its waiters only when that moved. Commits of other processes (replicas on
one PostgreSQL database) are seen by a slow poll of the same read.

With nobody waiting (a busy delivery worker reads the log on every pass anyway), a poke only
marks the position as possibly behind, and the first waiter to come reads it: a pushing process
commits many times a second, and a read after each commit would cost more than the push.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from storage import Store
from storage.errors import StorageError
from storage.models import START, EventPosition

logger = logging.getLogger(__name__)


class EventWatch:
    """The newest settled position of the event log, and a way to wait until it moves."""

    def __init__(self, store: Store, poll_seconds: float = 1.0) -> None:
        self._store = store
        self._poll_seconds = poll_seconds
        self._poked = asyncio.Event()
        self._moved = asyncio.Condition()
        self.position: EventPosition = START
        self._behind = False  # poked since the last read
        self._waiting = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the current position, then watch for more."""
        self.position = await self._store.last_event_position()
        self._task = asyncio.create_task(self._watch_forever(), name="subgate-event-watch")

    async def stop(self) -> None:
        """Stop watching (waiters then wait out their own timeouts)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def poke(self, _seconds: float = 0.0, _writes: int = 0) -> None:
        """Something committed: check the log soon, or when someone waits. Fits
        ``Store.observe_commits``."""
        self._behind = True
        if self._waiting:
            self._poked.set()

    async def wait_beyond(self, position: EventPosition, seconds: float) -> bool:
        """Wait until the log's position is past ``position``, at most ``seconds``;
        whether it is."""
        self._waiting += 1
        try:
            if self._behind:
                await self._check()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds), self._moved:
                    await self._moved.wait_for(lambda: self.position > position)
        finally:
            self._waiting -= 1
        return self.position > position

    async def _watch_forever(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the stop's
            # cancellation when the poke lands at the same moment, and the watch never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._poked.wait()
            self._poked.clear()
            await self._check()

    async def _check(self) -> None:
        self._behind = False  # a commit during the read marks it again
        try:
            position = await self._store.last_event_position()
        except StorageError as error:
            logger.warning("cannot read the event log's position: %s", error)
            return
        if position > self.position:
            async with self._moved:
                self.position = position
                self._moved.notify_all()
