"""The pull side: an app's events read from a cursor, waiting a while for new ones if asked.

For consumers that cannot expose an endpoint. A page holds the app's settled events after the
cursor, oldest first, with the same ids and payloads as the push (``server.events.payloads``), and
the cursor to read on from. A long-poll waits on ``EventWatch``, which wakes when the log moves:
the log is shared by every app, so each wake reads the app's events again and goes on waiting when
none of them is new. The wait is cut into short slices so that a client that hung up stops being
waited for (aiohttp does not cancel a handler whose client went away).
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from server.errors import UnknownEventType
from server.events.cursor import encode_cursor
from server.events.payloads import EventPayloads, event_id
from server.events.watch import EventWatch
from storage import Store
from storage.models import EventPosition, EventType, StoredEvent

EVENT_TYPES = tuple(event_type.value for event_type in EventType)
# How often a waiting long-poll checks that its client is still there.
STILL_THERE_SECONDS = 0.5


class FeedEvent(BaseModel):
    """One event as the feed hands it on: the push's payload with its ``webhook-id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="evt_...: the same id as the push's webhook-id, never reused.")
    type: EventType
    timestamp: str = Field(
        description="When the event was written (ISO 8601, UTC).",
        json_schema_extra={"format": "date-time"},
    )
    data: dict[str, Any] = Field(description="The payload's data, as docs/events.md shows it.")


class FeedPage(BaseModel):
    """A page of the feed, oldest first, and where to read on from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[FeedEvent]
    next_cursor: str = Field(description="Pass as after= to get only newer events.")


@dataclass(frozen=True, slots=True)
class FeedQuery:
    """What one page asks for: the app, the cursor's position, at most ``limit`` events of
    ``types``, and how long to wait for one."""

    app_id: str
    after: EventPosition
    limit: int
    types: tuple[str, ...] = EVENT_TYPES
    wait_seconds: float = 0.0


def event_types(globs: Sequence[str]) -> tuple[str, ...]:
    """The known types the globs match, in their usual order; a glob matching none is refused
    (it is a typo or a type this version does not know, never a filter worth answering)."""
    for glob in globs:
        if not any(fnmatch.fnmatchcase(known, glob) for known in EVENT_TYPES):
            raise UnknownEventType(
                f"a types glob matches no event type (one of {', '.join(EVENT_TYPES)})"
            )
    return tuple(t for t in EVENT_TYPES if any(fnmatch.fnmatchcase(t, g) for g in globs))


class EventFeed:
    """Pages of an app's events, long-polled on the watch."""

    def __init__(self, store: Store, payloads: EventPayloads, watch: EventWatch) -> None:
        self._store = store
        self._payloads = payloads
        self._watch = watch
        self.waiting = 0  # long-polls in progress: what /metrics shows

    async def page(
        self, query: FeedQuery, connected: Callable[[], bool] = lambda: True
    ) -> FeedPage:
        """The app's events after the cursor; waits up to ``query.wait_seconds`` for one while
        ``connected()`` (the client is still there)."""
        seen = self._watch.position  # read first: the read below sees everything up to it
        events = await self._read(query)
        if not events and query.wait_seconds > 0:
            self.waiting += 1
            try:
                events = await self._wait(query, max(seen, query.after), connected)
            finally:
                self.waiting -= 1
        last = events[-1].position if events else query.after
        return FeedPage(events=[self._entry(e) for e in events], next_cursor=encode_cursor(last))

    async def _read(self, query: FeedQuery) -> list[StoredEvent]:
        return await self._store.events_after(query.app_id, query.after, query.limit, query.types)

    async def _wait(
        self, query: FeedQuery, seen: EventPosition, connected: Callable[[], bool]
    ) -> list[StoredEvent]:
        """Read again each time the log moves past ``seen`` (up to which the app had nothing
        new), until something is new, the time is up or the client is gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + query.wait_seconds
        events: list[StoredEvent] = []
        while not events and connected() and (left := deadline - loop.time()) > 0:
            if await self._watch.wait_beyond(seen, min(left, STILL_THERE_SECONDS)):
                seen = self._watch.position
                events = await self._read(query)
        return events

    def _entry(self, event: StoredEvent) -> FeedEvent:
        payload = self._payloads.payload(event)
        return FeedEvent(id=event_id(event), **payload)
