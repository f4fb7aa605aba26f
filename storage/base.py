"""The storage interface every backend implements.

The interface speaks in domain operations, not SQL, so that each backend can give the
guarantee in its own way (SQLite: one writer; PostgreSQL: constraints and row locks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from storage.models import (
    ConsentEvent,
    NotificationRecord,
    RecordOutcome,
    RefusalCount,
    StoredNotification,
)


class Store(Protocol):
    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` unless the store answers a read."""

    async def record_notification(
        self, record: NotificationRecord, events: Sequence[ConsentEvent] = ()
    ) -> RecordOutcome:
        """Store a verified notification and the consent events it implies, atomically.

        Idempotent on (app_id, dedupe_key): a second record of the same key stores nothing,
        appends no events and answers ``duplicate=True``. Returns only after the commit is
        durable; raises ``StorageUnavailable`` when nothing was stored.
        """

    async def get_notification(self, app_id: str, dedupe_key: str) -> StoredNotification | None: ...

    async def count_notifications(self, app_id: str | None = None) -> int: ...

    async def consent_events(
        self, app_id: str, user_id: str | None = None
    ) -> list[ConsentEvent]: ...

    async def add_refusals(self, counts: Mapping[tuple[str, str], int], at: datetime) -> None:
        """Add to the refusal counters keyed by (app_id, reason)."""

    async def refusal_counts(self) -> list[RefusalCount]: ...
