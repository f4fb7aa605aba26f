"""The operator console's reads, alike on both backends: a mixin of ``StoreReads``.

A backend supplies ``_fetch`` and ``_sql`` (as for every shared read); the statements are
``storage.sql.console``'s, in the backend's dialect.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

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
from storage.models.console import NO_ID_ABOVE
from storage.sql.event_rows import histories
from storage.sql.ledger_rows import stored_events_in_order
from storage.sql.notification_rows import stored_notification
from storage.sql.outbox_rows import message_from_row
from storage.sql.rows import Row
from storage.sql.statements import Statements
from storage.timecodec import from_millis, optional_datetime, to_millis

_LAST_ID = "\U0010ffff"  # above every message id: a first page of messages starts under it


def like_containing(text: str) -> str:
    """A LIKE pattern (escape ``!``) matching values that contain ``text`` as it is."""
    escaped = text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


class ConsoleReads:
    """Pages and counts for the console, each one indexed read."""

    _sql: Statements

    async def _fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        raise NotImplementedError

    async def notifications_page(
        self, app_id: str, query: NotificationQuery
    ) -> list[StoredNotification]:
        """A page of the app's notifications, newest first (``NotificationQuery``)."""
        params = [*_range(app_id, query), like_containing(query.notify_id_text)]
        sql = self._sql.console.notifications
        if query.kind is not None:
            sql = self._sql.console.notifications_of_kind
            params.append(query.kind)
        rows = await self._fetch(sql, (*params, query.limit))
        return [stored_notification(row) for row in rows]

    async def notifications_scan_end(
        self, app_id: str, query: NotificationQuery, rows: int
    ) -> tuple[int, int] | None:
        """The (received time, id) of the ``rows``-th notification of the query's range (kind
        and times; not the text), newest first; None when the range holds fewer."""
        params = _range(app_id, query)
        sql = self._sql.console.scan_end
        if query.kind is not None:
            sql = self._sql.console.scan_end_of_kind
            params.append(query.kind)
        found = await self._fetch(sql, (*params, rows - 1))
        return (int(found[0][0]), int(found[0][1])) if found else None

    async def notification_buckets(
        self, app_id: str, since: datetime, width_seconds: int
    ) -> list[TimeBucket]:
        """How many of the app's notifications were received in each bucket of
        ``width_seconds`` since ``since``; empty buckets are absent."""
        width = width_seconds * 1000
        params = (width, app_id, to_millis(since))
        return _buckets(await self._fetch(self._sql.console.notification_buckets, params), width)

    async def refusal_buckets(
        self, app_id: str, since: datetime, width_seconds: int
    ) -> list[TimeBucket]:
        """How many of the app's requests were refused in each bucket (a whole number of
        minutes) since ``since``, as the refusal counters were flushed; empty ones absent."""
        width = width_seconds * 1000
        params = (width, app_id, to_millis(since) // 60000)
        return _buckets(await self._fetch(self._sql.console.refusal_buckets, params), width)

    async def messages_page(self, app_id: str, query: MessageQuery) -> list[MessageRecord]:
        """A page of the app's messages, newest first, in one status and on one channel when
        the query names them."""
        at, below = query.before or (NO_ID_ABOVE, _LAST_ID)
        statements = self._sql.console
        sql, extra = {
            (False, False): (statements.messages, ()),
            (True, False): (statements.messages_of_status, (query.status,)),
            (False, True): (statements.messages_of_channel, (query.channel,)),
            (True, True): (statements.messages_of_both, (query.status, query.channel)),
        }[(query.status is not None, query.channel is not None)]
        rows = await self._fetch(sql, (app_id, at, at, below, *extra, query.limit))
        return [message_from_row(row) for row in rows]

    async def messages_of_user(self, app_id: str, user_id: str, limit: int) -> list[MessageRecord]:
        """The user's newest messages (those addressed to the user), newest first."""
        rows = await self._fetch(self._sql.console.messages_of_user, (app_id, user_id, limit))
        return [message_from_row(row) for row in rows]

    async def message_counts_of_app(self, app_id: str) -> dict[tuple[str, str], int]:
        """The app's messages by (channel, status)."""
        rows = await self._fetch(self._sql.console.message_counts_of_app, (app_id,))
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def message_attempts(self, message_id: str) -> list[MessageAttempt]:
        """Every attempt of the message the store has recorded, first first."""
        rows = await self._fetch(self._sql.console.message_attempts, (message_id,))
        return [_attempt(row) for row in rows]

    async def consent_events_of_notification(
        self, app_id: str, dedupe_key: str
    ) -> list[StoredConsentEvent]:
        """The consent events a notification caused (their evidence names it), in fold order."""
        params = (app_id, f"notify:{dedupe_key}")
        rows = await self._fetch(self._sql.console.consent_events_of_notification, params)
        return stored_events_in_order(rows)

    async def deliveries_of_notification(self, notification_id: int) -> list[DeliveryHistory]:
        """Every destination's delivery of the notification's event, with its attempts."""
        params = (notification_id,)
        return histories(await self._fetch(self._sql.console.deliveries_of_notification, params))


def _range(app_id: str, query: NotificationQuery) -> list[Any]:
    """The parameters of a notifications range (``storage.sql.console``)."""
    at, below = query.before or (NO_ID_ABOVE, NO_ID_ABOVE)
    down_at, down_id = query.down_to or (query.since, 0)
    since = max(query.since, down_at)
    return [app_id, since, min(query.until, at), at, below, down_at, down_id]


def _attempt(row: Row) -> MessageAttempt:
    return MessageAttempt(
        number=int(row[0]),
        started_at=optional_datetime(row[1]),
        finished_at=optional_datetime(row[2]),
        status=row[3],
        platform_code=row[4],
        platform_msg=row[5],
        sub_code=row[6],
        sub_msg=row[7],
        error=row[8],
    )


def _buckets(rows: Sequence[Row], width: int) -> list[TimeBucket]:
    return [TimeBucket(start=from_millis(int(row[0]) * width), count=int(row[1])) for row in rows]
