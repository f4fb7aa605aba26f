"""/console/apps/{app}/messages: the app's messages newest first, filtered by status and
channel; one message as ``GET /v1/apps/{app}/messages/{id}`` answers it (the last answer, its
recipients and those the consent check left out), with every attempt the store recorded
(``0009_message_attempts``): when, what it left the message in, the platform's codes, the error."""

from __future__ import annotations

from aiohttp import web

from server.appkeys import STORE
from server.console.guard import app_of, console_page, render
from server.console.keys import SESSION
from server.console.queries import PAGE_SIZE, cursor, cursor_of, text
from server.errors import InvalidParameter, NotFound
from server.sending.messages import MessageView
from storage.models import MessageQuery, MessageStatus

STATUSES = tuple(status.value for status in MessageStatus)


def message_query(request: web.Request) -> MessageQuery:
    status = text(request, "status", 16)
    if status is not None and status not in STATUSES:
        raise InvalidParameter(f"status must be one of {', '.join(STATUSES)}")
    return MessageQuery(
        limit=PAGE_SIZE, status=status, channel=text(request, "channel", 32), before=cursor(request)
    )


@console_page
async def message_list(request: web.Request) -> web.StreamResponse:
    app_id = app_of(request)
    messages = await request.app[STORE].messages_page(app_id, message_query(request))
    older = None
    if len(messages) == PAGE_SIZE:
        older = cursor_of(messages[-1].created_at, messages[-1].id)
    filters = {name: request.query.get(name, "") for name in ("status", "channel")}
    context = {"messages": messages, "filters": filters, "older": older, "statuses": STATUSES}
    return render(request, "messages.html", context)


@console_page
async def message_detail(request: web.Request) -> web.StreamResponse:
    app_id = app_of(request)
    message = await request.app[STORE].get_message(app_id, request.match_info["message_id"])
    if message is None:
        raise NotFound("no message of this app has this id")
    grant = request[SESSION].grant
    context = {
        "m": MessageView.of(message),
        "attempts": await request.app[STORE].message_attempts(message.id),
        "can_settle": message.status is MessageStatus.UNKNOWN and {"write", "send"} <= grant.scopes,
        "notice": "Settled." if request.query.get("settled") else None,
    }
    return render(request, "message.html", context)
