"""GET /v1/apps/{app_id}/events: the feed of an app's events, for consumers that cannot expose
an endpoint (``server.events.feed``)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from server.api.keys import FEED
from server.api.operations import Operation, QueryParameter, query_number
from server.consent.ledger import ConsentLedger
from server.errors import InvalidCursor
from server.events.cursor import decode_cursor
from server.events.feed import EVENT_TYPES, FeedPage, FeedQuery, event_types
from storage.models import START, EventPosition

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_WAIT_SECONDS = 30


async def list_events(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    query = FeedQuery(
        app_id=app_id,
        after=_after(request),
        limit=int(query_number(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)),
        types=_types(request),
        wait_seconds=query_number(request, "wait", 0, 0, MAX_WAIT_SECONDS, whole=False),
    )
    return await request.app[FEED].page(query, lambda: _connected(request))


def _after(request: web.Request) -> EventPosition:
    cursor = request.query.get("after")
    if cursor is None:
        return START
    position = decode_cursor(cursor)
    if position is None:
        raise InvalidCursor("after is not a cursor this service gave out (use next_cursor)")
    return position


def _types(request: web.Request) -> tuple[str, ...]:
    text = request.query.get("types")
    return EVENT_TYPES if text is None else event_types(text.split(","))


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


EVENT_OPERATIONS = (
    Operation(
        "GET",
        "/v1/apps/{app_id}/events",
        "listEvents",
        "The app's events after a cursor, oldest first; waits for one with wait=",
        "read",
        list_events,
        FeedPage,
        query=(
            QueryParameter(
                "after",
                {"type": "string"},
                "A next_cursor from an earlier page; without it, the log's start.",
            ),
            QueryParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            ),
            QueryParameter(
                "types",
                {"type": "string"},
                "Comma-separated globs over " + ", ".join(EVENT_TYPES) + " (default: all).",
            ),
            QueryParameter(
                "wait",
                {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0},
                "Seconds to wait for an event when there is none yet (a long-poll).",
            ),
        ),
        errors=("invalid_cursor", "unknown_event_type", "invalid_parameter"),
    ),
)
