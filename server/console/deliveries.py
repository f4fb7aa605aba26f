"""/console/deliveries: each destination the token may see, its failing and dead deliveries
with every attempt, and replays (one delivery, or every event since a time) through the same
``DeliveryDesk`` the /v1 destinations routes use: the same visibility, the same wake-up."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from aiohttp import web

from server.api.destinations import STATUSES as DELIVERY_STATES
from server.api.keys import DESK
from server.console.guard import console_page, render, see_other
from server.console.keys import SESSION
from server.console.queries import PAGE_SIZE, text
from server.errors import InvalidParameter


@console_page
async def destination_list(request: web.Request) -> web.StreamResponse:
    states = await request.app[DESK].states(request[SESSION].grant)
    return render(request, "destinations.html", {"destinations": states.destinations})


@console_page
async def destination_page(request: web.Request) -> web.StreamResponse:
    name, grant = request.match_info["name"], request[SESSION].grant
    desk = request.app[DESK]
    status = request.query.get("status", "failing")
    if status not in DELIVERY_STATES:
        raise InvalidParameter(f"status must be one of {', '.join(DELIVERY_STATES)}")
    before = text(request, "before", 18)
    if before is not None and not before.isdigit():
        raise InvalidParameter("before must be a delivery id from a page's 'Older' link")
    page = await desk.deliveries(name, grant, status, PAGE_SIZE, int(before) if before else None)
    state = next(d for d in (await desk.states(grant)).destinations if d.name == name)
    context = {
        "d": state,
        "page": page,
        "status": status,
        "states": DELIVERY_STATES,
        "replayed": request.query.get("replayed"),
    }
    return render(request, "destination.html", context)


@console_page
async def replay_one(request: web.Request) -> web.StreamResponse:
    name, grant = request.match_info["name"], request[SESSION].grant
    grant.require_scope("write")
    form = await request.post()
    answer = await request.app[DESK].replay_one(name, grant, str(form.get("event_id", "")))
    return _back(name, str(form.get("status", "dead")), answer.replayed)


@console_page
async def replay_window(request: web.Request) -> web.StreamResponse:
    name, grant = request.match_info["name"], request[SESSION].grant
    grant.require_scope("write")
    form = await request.post()
    since = _since(str(form.get("since", "")))
    answer = await request.app[DESK].replay_since(name, grant, since)
    return _back(name, "pending", answer.replayed)


def _since(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidParameter("since must be a time like 2026-11-23T08:00 (UTC)") from None


def _back(name: str, status: str, replayed: int) -> web.Response:
    query = urlencode({"status": status if status in DELIVERY_STATES else "pending"})
    return see_other(f"/console/deliveries/{quote(name)}?{query}&replayed={replayed}")
