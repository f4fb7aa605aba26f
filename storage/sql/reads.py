"""The reads of the ``Store`` interface that both backends answer alike: one statement each,
decoded by the shared row decoders.

A backend supplies how a read runs (``_fetch``: SQLite's reader thread, PostgreSQL's pool) and,
if it has a cheaper way for the row of a single key, ``_fetch_key`` (SQLite reads it on the event
loop's own thread). Everything else here is the same for both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from storage.models import (
    START,
    ConsentAction,
    ConsentEvent,
    ConsentState,
    ConsentSummary,
    DeliveryHistory,
    DestinationBacklog,
    EventPosition,
    MessageRecord,
    RefusalCount,
    StoredConsentEvent,
    StoredEvent,
    StoredNotification,
)
from storage.sql.console_reads import ConsoleReads
from storage.sql.event_rows import (
    HISTORY_STATES,
    NO_ID_ABOVE,
    backlog,
    histories,
    stored_event,
    type_slots,
)
from storage.sql.ledger_rows import (
    event_from_row,
    state_from_row,
    stored_events_in_order,
    summary_from_row,
)
from storage.sql.notification_rows import refusal_count, stored_notification
from storage.sql.outbox_rows import message_from_row
from storage.sql.rows import Row
from storage.sql.statements import Statements
from storage.timecodec import to_millis

Decoded = TypeVar("Decoded")


class StoreReads(ConsoleReads):
    """Reads with the shared statements, rendered in the backend's dialect (``_sql``)."""

    _sql: Statements

    async def _fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        """Every row of one read statement; ``StorageUnavailable`` when the store cannot say."""
        raise NotImplementedError

    async def _fetch_key(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        """The row (if any) of one key: a read by primary key, at most one row."""
        return await self._fetch(sql, params)

    async def _first(
        self, sql: str, params: Sequence[Any], decode: Callable[[Row], Decoded]
    ) -> Decoded | None:
        rows = await self._fetch(sql, params)
        return decode(rows[0]) if rows else None

    async def _count(self, sql: str, params: Sequence[Any] = ()) -> int:
        rows = await self._fetch(sql, params)
        return int(rows[0][0])

    async def ping(self) -> None:
        """Raise ``StorageUnavailable`` unless the store answers a read."""
        await self._fetch("SELECT 1", ())

    async def get_notification(self, app_id: str, dedupe_key: str) -> StoredNotification | None:
        """The notification stored under (app, dedupe key), or None."""
        sql = self._sql.notifications.notification_of_key
        return await self._first(sql, (app_id, dedupe_key), stored_notification)

    async def count_notifications(self, app_id: str | None = None) -> int:
        """How many notifications are stored (of one app, or of all)."""
        if app_id is None:
            return await self._count(self._sql.notifications.count_notifications)
        return await self._count(self._sql.notifications.count_notifications_of_app, (app_id,))

    async def consent_events(self, app_id: str, user_id: str | None = None) -> list[ConsentEvent]:
        """The app's (or one user's) consent log, in the order the events happened."""
        if user_id is None:
            rows = await self._fetch(self._sql.ledger.events_of_app, (app_id,))
        else:
            rows = await self._fetch(self._sql.ledger.events_of_user, (app_id, user_id))
        return [event_from_row(row) for row in rows]

    async def consent_states(
        self, app_id: str, user_id: str, channel: str | None = None, template_id: str | None = None
    ) -> list[ConsentState]:
        """The user's states (on one channel, of one template, or one key's), by key."""
        ledger = self._sql.ledger
        if channel is not None and template_id is not None:  # one key: at most one row
            rows = await self._fetch_key(
                ledger.state_of_key, (app_id, user_id, channel, template_id)
            )
        elif channel is not None:
            rows = await self._fetch(ledger.states_of_user_on_channel, (app_id, user_id, channel))
        elif template_id is not None:
            rows = await self._fetch(
                ledger.states_of_user_of_template, (app_id, user_id, template_id)
            )
        else:
            rows = await self._fetch(ledger.states_of_user, (app_id, user_id))
        return [state_from_row(row) for row in rows]

    async def consent_summary(
        self, app_id: str, user_id: str, channel: str, template_id: str
    ) -> ConsentSummary | None:
        """One key's summary (what a lookup answers from), or None for a key never written."""
        key = (app_id, user_id, channel, template_id)
        rows = await self._fetch_key(self._sql.ledger.summary_of_key, key)
        return summary_from_row(rows[0]) if rows else None

    async def consent_history(
        self, app_id: str, user_id: str, channel: str, template_id: str
    ) -> list[StoredConsentEvent]:
        """The key's events in fold order (the order that decides its state)."""
        key = (app_id, user_id, channel, template_id)
        return stored_events_in_order(await self._fetch(self._sql.ledger.history_of_key, key))

    async def recent_actions(
        self, app_id: str, channel: str, action: ConsentAction, since: datetime
    ) -> int:
        """How many ``action`` events of the app on ``channel`` happened, or were recorded, at
        or after ``since``."""
        cutoff = to_millis(since)
        params = (app_id, channel, action.value, cutoff, cutoff)
        return await self._count(self._sql.ledger.recent_actions, params)

    async def get_message(self, app_id: str, message_id: str) -> MessageRecord | None:
        """The app's message of this id, or None (another app's is none of its business)."""
        sql = self._sql.outbox.message_of_app
        return await self._first(sql, (app_id, message_id), message_from_row)

    async def count_messages(self, status: str | None = None) -> int:
        """How many messages there are (in one status, or in all)."""
        if status is None:
            return await self._count(self._sql.outbox.count_messages)
        return await self._count(self._sql.outbox.count_messages_of_status, (status,))

    async def message_counts(self) -> dict[tuple[str, str], int]:
        """Messages by (channel, status), for metrics."""
        rows = await self._fetch(self._sql.outbox.message_counts, ())
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def refusal_counts(self) -> list[RefusalCount]:
        """Every refusal counter, by (app, reason)."""
        rows = await self._fetch(self._sql.notifications.refusal_counts, ())
        return [refusal_count(row) for row in rows]

    async def events_after(
        self, app_id: str, after: EventPosition, limit: int, types: Sequence[str]
    ) -> list[StoredEvent]:
        """The app's settled events of ``types`` after ``after``, oldest first: types the log
        does not know match nothing, and no type at all matches nothing."""
        slots = type_slots(types)
        if slots is None:
            return []
        rows = await self._fetch(self._sql.events.events_of_app, (app_id, *after, *slots, limit))
        return [stored_event(row) for row in rows]

    async def event_by_id(self, event_id: int) -> StoredEvent | None:
        """One event of any app, or None."""
        return await self._first(self._sql.events.event_by_id, (event_id,), stored_event)

    async def last_event_position(self) -> EventPosition:
        """The newest settled event's position, ``START`` for an empty log."""
        rows = await self._fetch(self._sql.events.last_position, ())
        return EventPosition(rows[0][0], rows[0][1]) if rows else START

    async def destination_backlogs(self) -> list[DestinationBacklog]:
        """Every destination the fan-out has a cursor for, by name; the last error is the
        last failing or dead delivery's, at the time it was last updated."""
        return [backlog(row) for row in await self._fetch(self._sql.events.backlogs, ())]

    async def delivery_histories(
        self, destination: str, status: str, limit: int, before_id: int | None = None
    ) -> list[DeliveryHistory]:
        """A page of the destination's deliveries in one state, newest first, ids below
        ``before_id``: ``pending`` is every pending one, ``failing`` those of them with an
        attempt; ``ValueError`` for a state not among the four."""
        if status not in HISTORY_STATES:
            raise ValueError(f"no delivery state {status!r}")
        state, attempts = HISTORY_STATES[status]
        below = NO_ID_ABOVE if before_id is None else before_id
        params = (destination, state.value, attempts, below, limit)
        return histories(await self._fetch(self._sql.events.histories, params))
