"""/console/apps/{app}/notifications: the app's notifications newest first, filtered by kind,
received time and text in the notify id (looked for in a bounded stretch at a time, and an
exact notify id found at once); each one opened with its decoded fields, its
biz_content (decrypted and parsed, as the events hand it on), how it was verified, the consent
events it caused and its deliveries."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from server.api.destination_views import DeliveryView, delivery_view
from server.api.keys import DESK
from server.appkeys import SETTINGS, STORE
from server.console.guard import app_of, console_page, render
from server.console.keys import SESSION
from server.console.queries import PAGE_SIZE, cursor, cursor_of, text, utc_minute
from server.errors import InvalidParameter, NotFound
from server.events.keys import EVENT_PAYLOADS
from storage.models import EventType, NotificationQuery, StoredEvent, StoredNotification
from storage.models.console import NO_ID_ABOVE
from storage.timecodec import from_millis

# How many of the range's notifications, newest first, a text search reads for one page: the
# text is matched inside the notify id, which no index orders, so a text that matches nothing
# would otherwise read back through every notification of the app.
SEARCH_ROWS = 5_000
# Where a row finds its user and what happened, in the fields or the parsed biz_content.
_WHO = ("buyer_id", "FromAlipayUserId", "from_user_id", "user_id", "open_id")
_WHAT = ("trade_status", "EventType", "msg_method", "status", "notify_type")


def notification_query(request: web.Request) -> NotificationQuery:
    """The page's filters and cursor, as the store reads them."""
    before = cursor(request)
    if before is not None and not before[1].isdigit():
        raise InvalidParameter("before must be a cursor from a page's 'Older' link")
    return NotificationQuery(
        limit=PAGE_SIZE,
        kind=text(request, "kind", 64),
        notify_id_text=text(request, "q") or "",
        since=utc_minute(request, "since") or 0,
        until=utc_minute(request, "until") or NO_ID_ABOVE,
        before=None if before is None else (before[0], int(before[1])),
    )


@console_page
async def notification_list(request: web.Request) -> web.StreamResponse:
    app_id, store = app_of(request), request.app[STORE]
    query = notification_query(request)
    searched_to = None
    if query.notify_id_text:  # a text is looked for in a bounded stretch of the index
        searched_to = await store.notifications_scan_end(app_id, query, SEARCH_ROWS)
        query = replace(query, down_to=searched_to)
    rows = await store.notifications_page(app_id, query)
    older, stopped = None, None
    if len(rows) == PAGE_SIZE:
        older = cursor_of(rows[-1].received_at, rows[-1].id)
    elif searched_to is not None:  # not a full page, but more to search: on from the bound
        stopped = from_millis(searched_to[0])
        older = cursor_of(stopped, searched_to[1])
    filters = {name: request.query.get(name, "") for name in ("kind", "q", "since", "until")}
    context = {
        "rows": [summary(request, n) for n in rows],
        "filters": filters,
        "older": older,
        "search_stopped": stopped,
        "search_rows": SEARCH_ROWS,
        "exact": query.notify_id_text
        and await store.get_notification(app_id, query.notify_id_text),
    }
    return render(request, "notifications.html", context)


def summary(request: web.Request, notification: StoredNotification) -> dict[str, Any]:
    """What a row of the list shows: who and what, from the decoded fields and content."""
    data = decoded(request, notification)
    found = {**data["fields"]}
    if isinstance(data["biz_content"], dict):
        found |= {k: v for k, v in data["biz_content"].items() if isinstance(v, str)}
    who = next((found[k] for k in _WHO if found.get(k)), "")
    what = next((found[k] for k in _WHAT if found.get(k)), "")
    return {"n": notification, "who": who, "what": what}


def decoded(request: web.Request, notification: StoredNotification) -> dict[str, Any]:
    """The notification as its ``notification.received`` event hands it on: fields decoded,
    ``biz_content`` decrypted and parsed (``server.events.payloads``)."""
    event = StoredEvent(
        id=0,
        txid=0,
        type=EventType.NOTIFICATION_RECEIVED,
        app_id=notification.app_id,
        user_id=None,
        kind=notification.kind,
        created_at=notification.received_at,
        notification=notification,
    )
    data: dict[str, Any] = request.app[EVENT_PAYLOADS].payload(event)["data"]
    return data


@console_page
async def notification_detail(request: web.Request) -> web.StreamResponse:
    app_id = app_of(request)
    store = request.app[STORE]
    notification = await store.get_notification(app_id, request.match_info["notify_id"])
    if notification is None:
        raise NotFound("no notification of this app has this notify id")
    context = {
        "n": notification,
        "data": decoded(request, notification),
        "caused": await store.consent_events_of_notification(app_id, notification.dedupe_key),
        "deliveries": await visible_deliveries(request, notification.id),
    }
    return render(request, "notification.html", context)


async def visible_deliveries(
    request: web.Request, notification_id: int
) -> list[tuple[str, DeliveryView]]:
    """The notification's deliveries (destination, delivery) to the destinations the session's
    token may see."""
    desk = request.app.get(DESK)
    if desk is None:
        return []
    histories = await request.app[STORE].deliveries_of_notification(notification_id)
    grant = request[SESSION].grant
    shown = {d.name for d in request.app[SETTINGS].destinations if desk.visible_to(grant, d)}
    return [
        (h.delivery.destination, delivery_view(h))
        for h in histories
        if h.delivery.destination in shown
    ]
