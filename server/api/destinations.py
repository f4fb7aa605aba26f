"""The /v1/destinations routes: operating the push (``server.api.destination_desk``).

These operations are no one app's: the token's scope is checked by the guard, and what it may
see by the desk (``GRANT``)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from server.api.destination_views import (
    DeliveryPage,
    DestinationList,
    ReplayAnswer,
    ReplayWindow,
)
from server.api.keys import DESK
from server.api.operations import (
    BODY_ERRORS,
    GRANT,
    Operation,
    QueryParameter,
    query_number,
)
from server.consent.ledger import ConsentLedger
from server.errors import InvalidParameter
from server.web.json_body import read_model

STATUSES = ("failing", "dead", "pending", "delivered")
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
MAX_ID = 2**63 - 1
DESTINATION = "/v1/destinations/{name}"


async def list_destinations(request: web.Request, ledger: ConsentLedger, _: str) -> BaseModel:
    return await request.app[DESK].states(request[GRANT])


async def list_deliveries(request: web.Request, ledger: ConsentLedger, _: str) -> BaseModel:
    status = request.query.get("status", "failing")
    if status not in STATUSES:
        raise InvalidParameter(f"status must be one of {', '.join(STATUSES)}")
    limit = int(query_number(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT))
    before = int(query_number(request, "before", 0, 1, MAX_ID)) or None
    name = request.match_info["name"]
    return await request.app[DESK].deliveries(name, request[GRANT], status, limit, before)


async def replay_delivery(request: web.Request, ledger: ConsentLedger, _: str) -> BaseModel:
    name, event_id = request.match_info["name"], request.match_info["event_id"]
    return await request.app[DESK].replay_one(name, request[GRANT], event_id)


async def replay_window(request: web.Request, ledger: ConsentLedger, _: str) -> BaseModel:
    desk, name = request.app[DESK], request.match_info["name"]
    desk.destination(name, request[GRANT])  # an unknown destination before a bad body
    window = await read_model(request, ReplayWindow)
    return await desk.replay_since(name, request[GRANT], window.since)


DESTINATION_OPERATIONS = (
    Operation(
        "GET",
        "/v1/destinations",
        "listDestinations",
        "Each configured destination (never its secret) with its backlog and last error",
        "read",
        list_destinations,
        DestinationList,
        for_app=False,
    ),
    Operation(
        "GET",
        f"{DESTINATION}/deliveries",
        "listDeliveries",
        "The destination's deliveries in one state, newest first, with every attempt",
        "read",
        list_deliveries,
        DeliveryPage,
        query=(
            QueryParameter(
                "status", {"enum": list(STATUSES), "default": "failing"}, "failing: retried."
            ),
            QueryParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            ),
            QueryParameter(
                "before", {"type": "integer", "minimum": 1}, "A page's next_before: older ones."
            ),
        ),
        errors=("destination_not_found", "invalid_parameter"),
        for_app=False,
    ),
    Operation(
        "POST",
        f"{DESTINATION}/deliveries/{{event_id}}:replay",
        "replayDelivery",
        "Deliver one event to the destination again, now, with the same webhook-id",
        "write",
        replay_delivery,
        ReplayAnswer,
        errors=("destination_not_found", "delivery_not_found"),
        for_app=False,
    ),
    Operation(
        "POST",
        f"{DESTINATION}:replay",
        "replayDestination",
        "Deliver again every event the destination takes written since a time",
        "write",
        replay_window,
        ReplayAnswer,
        ReplayWindow,
        errors=(*BODY_ERRORS, "destination_not_found"),
        for_app=False,
    ),
)
