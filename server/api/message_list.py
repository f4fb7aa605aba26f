"""GET /v1/apps/{app_id}/messages: the app's messages, newest first, a page at a time, in one
status (``status=unknown``: those an operator settles) or on one channel.

The store reads the page (``Store.messages_page``, keyset on the indexes of migration 0008, the
same read the console's messages page makes). The cursor is the last message's place (creation
time, then id) in URL-safe base64 with a version: opaque to callers, so that the order may
change its spelling later.
"""

from __future__ import annotations

import base64
import binascii

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from server.api.operations import Operation, QueryParameter, query_number
from server.appkeys import STORE
from server.consent.ledger import ConsentLedger
from server.errors import InvalidCursor, InvalidParameter
from server.sending.channels.registry import SEND_CHANNELS
from server.sending.messages import MessageView
from storage.models import MessageQuery, MessageStatus
from storage.timecodec import to_millis

MAX_LIMIT = 100
DEFAULT_LIMIT = 50
_VERSION = "1"
_MAX_CURSOR = 200
Place = tuple[int, str]  # created_at in epoch milliseconds, then the message id


class MessagePage(BaseModel):
    """A page of messages, newest first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: list[MessageView]
    next_cursor: str | None = Field(
        description="Pass as after= for the next (older) page; null when this page is the last."
    )


def encode_place(place: Place) -> str:
    """The cursor of the page after the message at ``place``."""
    text = f"{_VERSION}.{place[0]}.{place[1]}".encode()
    return base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")


def decode_place(cursor: str) -> Place | None:
    """The place a cursor names, or None when it is not one this service gave out."""
    if not cursor or len(cursor) > _MAX_CURSOR:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    version, _, rest = text.partition(".")
    millis, _, message_id = rest.partition(".")
    if version != _VERSION or not millis.isdigit() or not message_id:
        return None
    return int(millis), message_id


async def list_messages(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    limit = int(query_number(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT))
    query = MessageQuery(
        limit=limit,
        status=_one_of(request, "status", tuple(MessageStatus)),
        channel=_one_of(request, "channel", tuple(spec.name for spec in SEND_CHANNELS)),
        before=_below(request),
    )
    records = await request.app[STORE].messages_page(app_id, query)
    last = records[-1] if len(records) == limit else None
    return MessagePage(
        messages=[MessageView.of(record) for record in records],
        next_cursor=None if last is None else encode_place((to_millis(last.created_at), last.id)),
    )


def _one_of(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise InvalidParameter(f"{name} must be one of {', '.join(allowed)}")
    return value


def _below(request: web.Request) -> Place | None:
    cursor = request.query.get("after")
    if cursor is None:
        return None
    place = decode_place(cursor)
    if place is None:
        raise InvalidCursor("after is not a cursor this service gave out (use next_cursor)")
    return place


MESSAGE_LIST_OPERATIONS = (
    Operation(
        "GET",
        "/v1/apps/{app_id}/messages",
        "listMessages",
        "The app's messages, newest first, in one status or on one channel, a page at a time",
        "read",
        list_messages,
        MessagePage,
        query=(
            QueryParameter("status", {"type": "string", "enum": [s.value for s in MessageStatus]}),
            QueryParameter(
                "channel", {"type": "string", "enum": [spec.name for spec in SEND_CHANNELS]}
            ),
            QueryParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            ),
            QueryParameter(
                "after",
                {"type": "string"},
                "A next_cursor from an earlier page; without it, the newest messages.",
            ),
        ),
        errors=("invalid_cursor", "invalid_parameter"),
    ),
)
