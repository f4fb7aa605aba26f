"""The operator console's reads (``server/console/``), part of the storage interface (``Store``
inherits them): each an indexed read, pages by keyset, never a count or a scan that grows with
the tables (``storage/sql/console.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from storage.models import (
    DeliveryHistory,
    MessageAttempt,
    MessageQuery,
    MessageRecord,
    NotificationQuery,
    StoredConsentEvent,
    StoredNotification,
    TimeBucket,
)


class ConsoleQueries(Protocol):
    """What the console asks every backend."""

    async def notifications_page(
        self, app_id: str, query: NotificationQuery
    ) -> list[StoredNotification]:
        """A page of the app's notifications, newest first: of one kind, received within a
        time range, whose notify id contains a text, as ``query`` says."""

    async def notifications_scan_end(
        self, app_id: str, query: NotificationQuery, rows: int
    ) -> tuple[int, int] | None:
        """The (received time in epoch milliseconds, id) of the ``rows``-th notification of the
        query's range, newest first (its kind and times, not its text), read from an index;
        None when the range holds fewer. A text search reads down to it and no further."""

    async def notification_buckets(
        self, app_id: str, since: datetime, width_seconds: int
    ) -> list[TimeBucket]:
        """How many of the app's notifications were received in each bucket of
        ``width_seconds`` since ``since``, oldest first; empty buckets are absent."""

    async def refusal_buckets(
        self, app_id: str, since: datetime, width_seconds: int
    ) -> list[TimeBucket]:
        """How many of the app's requests were refused in each bucket (a whole number of
        minutes) since ``since``, by the time the counters were flushed; empty ones absent."""

    async def messages_page(self, app_id: str, query: MessageQuery) -> list[MessageRecord]:
        """A page of the app's messages, newest first, of one status and channel if given."""

    async def messages_of_user(self, app_id: str, user_id: str, limit: int) -> list[MessageRecord]:
        """The newest ``limit`` messages addressed to the user, newest first."""

    async def message_counts_of_app(self, app_id: str) -> dict[tuple[str, str], int]:
        """The app's messages by (channel, status)."""

    async def message_attempts(self, message_id: str) -> list[MessageAttempt]:
        """Every recorded attempt of the message, first first (``0009_message_attempts``)."""

    async def consent_events_of_notification(
        self, app_id: str, dedupe_key: str
    ) -> list[StoredConsentEvent]:
        """The consent events the notification caused, in fold order."""

    async def deliveries_of_notification(self, notification_id: int) -> list[DeliveryHistory]:
        """Every destination's delivery of the notification's event, with its attempts."""
