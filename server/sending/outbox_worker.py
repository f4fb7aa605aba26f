"""The outbox worker: retries queued messages with backoff and settles interrupted attempts.

Runs in the background of every Subgate process. Each pass:
1. attempts whose lease expired mid-call (their process died) become ``unknown``: the platform
   may have delivered them, so they are never called again;
2. due ``pending`` / ``queued`` messages are leased to this process and attempted once each.
Leases make this safe with several workers; with SQLite the single writer already serialises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from server.sending.sender import MessageSender
from server.settings import OutboxSettings
from storage import Store
from storage.errors import StorageError

logger = logging.getLogger(__name__)


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        sender: MessageSender,
        settings: OutboxSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._sender = sender
        self._settings = settings
        self._clock = clock

    async def run_once(self) -> int:
        """One pass; returns how many messages were attempted."""
        now = self._clock()
        abandoned = await self._store.abandon_in_flight(now)
        if abandoned:
            logger.warning("%d interrupted send(s) marked unknown: %s", len(abandoned), abandoned)
        lease = now + timedelta(seconds=self._settings.lease_seconds)
        due = await self._store.claim_due_messages(
            self._sender.owner, now, lease, self._settings.batch_size
        )
        for message in due:
            await self._sender.attempt(message)
        return len(due)

    async def run_forever(self) -> None:
        while True:
            try:
                attempted = await self.run_once()
            except StorageError as error:
                logger.warning("outbox pass failed: %s", error)
                attempted = 0
            if attempted < self._settings.batch_size:
                await asyncio.sleep(self._settings.poll_seconds)
