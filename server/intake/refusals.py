"""Counting refused notifications per (app, reason), in bounded memory, flushed to the store.

Keys are bounded: the app is a configured app id or "-" (never a value taken from a request
that did not match one), and the reason is an error code. Log lines are rate-limited per key
so a flood of garbage cannot flood the log either.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from server.ops.log_gate import LogGate
from storage.errors import StorageError

logger = logging.getLogger(__name__)

UNKNOWN_APP_KEY = "-"


class RefusalSink(Protocol):
    """Where counts are flushed: the store, or (from an intake worker) the relay."""

    async def add_refusals(self, counts: Mapping[tuple[str, str], int], at: datetime) -> None: ...


class RefusalCounter:
    def __init__(self) -> None:
        self._totals: Counter[tuple[str, str]] = Counter()
        self._unflushed: Counter[tuple[str, str]] = Counter()
        self._log_gate = LogGate()
        # One flush at a time: a flush that found the batch taken by a flush still in progress
        # would return before those counts are stored (or restored, when that write fails).
        self._flushing = asyncio.Lock()

    def count(self, app_key: str, reason: str, message: str) -> None:
        key = (app_key, reason)
        self._totals[key] += 1
        self._unflushed[key] += 1
        logger.debug("refused app=%s reason=%s: %s", app_key, reason, message)
        since_last = self._log_gate.due(key)
        if since_last:
            logger.info(
                "refused app=%s reason=%s (%d since last report): %s",
                app_key,
                reason,
                since_last,
                message,
            )

    def totals(self) -> dict[tuple[str, str], int]:
        return dict(self._totals)

    def add(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Take counts made (and logged) by another process, to show and flush as our own."""
        self._totals.update(counts)
        self._unflushed.update(counts)

    async def flush(self, store: RefusalSink, at: datetime) -> None:
        """Add the counts not yet stored; on failure keep them for the next flush.

        Waits for a flush already in progress, so that on return every count made before the
        call is stored (unless this very write failed).
        """
        async with self._flushing:
            if not self._unflushed:
                return
            batch, self._unflushed = self._unflushed, Counter()
            try:
                await store.add_refusals(batch, at)
            except StorageError as error:
                self._unflushed.update(batch)
                logger.warning("refusal counts not flushed: %s", error)
