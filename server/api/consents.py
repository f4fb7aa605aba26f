"""The /v1 routes of the consent ledger: subscribe results, opt-ins, lookups and history."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from server.api.operations import (
    BODY_ERRORS,
    Operation,
    channel_of,
    idempotency_key,
    path_value,
)
from server.consent.ledger import ConsentLedger
from server.consent.subscribe_results import SubscribeResult
from server.consent.views import (
    ConsentUpdate,
    History,
    LookupAnswer,
    LookupRequest,
    SubscribeReportAnswer,
    Subscription,
    SubscriptionList,
)
from server.web.json_body import read_model


async def report_subscribe_result(
    request: web.Request, ledger: ConsentLedger, app_id: str
) -> BaseModel:
    user_id = path_value(request, "user_id")
    key = idempotency_key(request)
    report = await read_model(request, SubscribeResult)
    return await ledger.report_subscribe_result(app_id, user_id, report, key)


async def put_consent(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    user_id, template_id = path_value(request, "user_id"), path_value(request, "template_id")
    channel = channel_of(request)
    update = await read_model(request, ConsentUpdate)
    return await ledger.set_consent(app_id, user_id, channel, template_id, update)


async def list_subscriptions(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    return await ledger.subscriptions(app_id, path_value(request, "user_id"))


async def get_subscription(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    user_id, template_id = path_value(request, "user_id"), path_value(request, "template_id")
    return await ledger.subscription(app_id, user_id, template_id, channel_of(request))


async def get_history(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    user_id, template_id = path_value(request, "user_id"), path_value(request, "template_id")
    return await ledger.history(app_id, user_id, template_id, channel_of(request))


async def lookup(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    return await ledger.lookup(app_id, await read_model(request, LookupRequest))


USER = "/v1/apps/{app_id}/users/{user_id}"
CONSENT_OPERATIONS = (
    Operation(
        "POST",
        f"{USER}/subscribe-results",
        "reportSubscribeResult",
        "Report a my.requestSubscribeMessage result, exactly as the mini-program got it",
        "write",
        report_subscribe_result,
        SubscribeReportAnswer,
        SubscribeResult,
        headers=("Idempotency-Key",),
        errors=(*BODY_ERRORS, "idempotency_key_required", "idempotency_conflict", "invalid_report"),
    ),
    Operation(
        "PUT",
        f"{USER}/consents/{{channel}}/{{template_id}}",
        "setConsent",
        "Grant or revoke consent on an opt-in channel (jym_push, workcore)",
        "write",
        put_consent,
        Subscription,
        ConsentUpdate,
        errors=(*BODY_ERRORS, "channel_not_opt_in"),
    ),
    Operation(
        "GET",
        f"{USER}/subscriptions",
        "listSubscriptions",
        "Every template and channel the ledger knows for this user",
        "read",
        list_subscriptions,
        SubscriptionList,
    ),
    Operation(
        "GET",
        f"{USER}/subscriptions/{{template_id}}",
        "getSubscription",
        "May this user be messaged with this template? (unknown users: can_send false)",
        "read",
        get_subscription,
        Subscription,
        query=("channel",),
    ),
    Operation(
        "GET",
        f"{USER}/subscriptions/{{template_id}}/history",
        "getSubscriptionHistory",
        "Every event of this user and template, oldest first, with its source and evidence",
        "read",
        get_history,
        History,
        query=("channel",),
    ),
    Operation(
        "POST",
        "/v1/apps/{app_id}/subscriptions:lookup",
        "lookupSubscriptions",
        "can_send and credits of up to 1,000 users for one template, in one round trip",
        "read",
        lookup,
        LookupAnswer,
        LookupRequest,
        errors=BODY_ERRORS,
    ),
)
