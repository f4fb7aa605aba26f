"""Every /v1 route, from the operation tables of the consent ledger, of sending, of the events
feed and of the destinations; the single-key lookup on the lane as well."""

from __future__ import annotations

from aiohttp import web

from server.api.consents import CONSENT_OPERATIONS
from server.api.destinations import DESTINATION_OPERATIONS
from server.api.events import EVENT_OPERATIONS
from server.api.message_list import MESSAGE_LIST_OPERATIONS
from server.api.messages import MESSAGE_OPERATIONS
from server.api.operations import Operation, guarded
from server.api.subscription_lane import SubscriptionLane
from server.web.lane import add_lane_route


def all_operations() -> tuple[Operation, ...]:
    """Consent routes first, then sending and reconciliation, then events and their push."""
    return (
        CONSENT_OPERATIONS
        + MESSAGE_OPERATIONS
        + MESSAGE_LIST_OPERATIONS
        + EVENT_OPERATIONS
        + DESTINATION_OPERATIONS
    )


def setup_api_routes(app: web.Application) -> None:
    for operation in all_operations():
        app.router.add_route(operation.method, operation.path, guarded(operation))
    add_lane_route(app, SubscriptionLane(app))
