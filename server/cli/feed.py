"""Following an app's event feed (``GET /v1/apps/{app}/events``) with long-polls: what
``listen`` forwards and ``notifications --tail`` prints, read the same way."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from server.cli.client import SubgateApi

WAIT_SECONDS = 25  # each long-poll, below the feed's 30-second limit
PAGE_SIZE = 100
SKIP_PAGE = 500


@dataclass(frozen=True, slots=True)
class FeedReader:
    """One app's feed, of the event types ``types`` (comma-separated globs; None: all)."""

    api: SubgateApi
    app_id: str
    types: str | None = None

    async def page(self, cursor: str | None, wait: int, limit: int) -> dict[str, Any]:
        """The events after ``cursor`` (the log's start for None), waiting up to ``wait`` s."""
        params = {"wait": str(wait), "limit": str(limit)}
        params |= {"after": cursor} if cursor else {}
        params |= {"types": self.types} if self.types else {}
        path = f"/v1/apps/{self.app_id}/events"
        page: dict[str, Any] = await self.api.get(path, params, seconds=wait + 15)
        return page

    async def end_of_log(self) -> str | None:
        """The cursor past every event already written (their history is not followed)."""
        _, cursor = await self.latest(0)
        return cursor

    async def latest(self, count: int) -> tuple[list[Mapping[str, Any]], str | None]:
        """The last ``count`` events already written, and the cursor past them."""
        kept: deque[Mapping[str, Any]] = deque(maxlen=count)
        cursor = None
        while True:
            page = await self.page(cursor, 0, SKIP_PAGE)
            kept.extend(page["events"])
            cursor = str(page["next_cursor"])
            if len(page["events"]) < SKIP_PAGE:
                return list(kept), cursor

    async def follow(self, cursor: str | None) -> AsyncIterator[Mapping[str, Any]]:
        """Every event after ``cursor``, in the feed's order, for ever (long-polling)."""
        while True:
            page = await self.page(cursor, WAIT_SECONDS, PAGE_SIZE)
            for event in page["events"]:
                yield event
            cursor = page["next_cursor"]
