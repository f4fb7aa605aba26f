"""The /v1 consent API: one table of operations drives the routes, their guards and /openapi.json.

Handlers are thin: authenticate, parse, call ``ConsentLedger``, render. Every refusal is raised
as a ``server.errors`` exception and rendered once, by ``server.middleware``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

from server.api_models import (
    USER_ID_PATTERN,
    ConsentUpdate,
    History,
    LookupAnswer,
    LookupRequest,
    SubscribeReportAnswer,
    Subscription,
    SubscriptionList,
)
from server.appkeys import CREDENTIALS, LEDGER, TOKENS
from server.auth import Scope
from server.consent import ConsentLedger
from server.errors import (
    AppNotFound,
    IdempotencyKeyRequired,
    ValidationFailed,
)
from server.jsonbody import read_model
from server.subscribe_results import SubscribeResult
from storage.models import Channel

Handler = Callable[[web.Request, ConsentLedger, str], Awaitable[BaseModel]]

_IDENTIFIER = re.compile(USER_ID_PATTERN)
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
COMMON_ERRORS = ("unauthorized", "forbidden", "app_not_found", "validation_failed")
BODY_ERRORS = ("invalid_json", "unsupported_media_type", "too_large", "request_timeout")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    scope: Scope
    handler: Handler
    response: type[BaseModel]
    request: type[BaseModel] | None = None
    query: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default=())
    accepted: bool = False  # may answer 202 (still being processed) as well as 200


def path_value(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _IDENTIFIER.fullmatch(value):  # not match: "$" also matches before a final "\n"
        raise ValidationFailed(f"{name} must be 1-64 letters, digits, '_' or '-'")
    return value


def channel_of(request: web.Request, default: str = Channel.MINI_TEMPLATE) -> str:
    value = request.match_info.get("channel") or request.query.get("channel") or default
    if value not in Channel.__members__.values():
        raise ValidationFailed(f"channel must be one of {', '.join(c.value for c in Channel)}")
    return value


def idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        raise IdempotencyKeyRequired("send an Idempotency-Key header so a retry is applied once")
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ValidationFailed("Idempotency-Key must be 1-128 printable ASCII characters")
    return key


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
OPERATIONS = (
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


def guarded(operation: Operation) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Authenticate, authorise for the app and scope, then run the operation."""

    async def handle(request: web.Request) -> web.Response:
        grant = request.app[TOKENS].authenticate(request.headers.get("Authorization"))
        app_id = request.match_info["app_id"]
        grant.require(app_id, operation.scope)
        if app_id not in request.app[CREDENTIALS]:
            raise AppNotFound("no such app is configured")
        answer = await operation.handler(request, request.app[LEDGER], app_id)
        status = getattr(answer, "http_status", 200)
        return json_answer(answer, status)

    return handle


def json_answer(answer: BaseModel, status: int = 200) -> web.Response:
    """The model as JSON bytes, serialized once (``model_dump_json`` gives a str that
    ``web.json_response`` encodes again: measurable on the single lookup, bench/README.md)."""
    body = type(answer).__pydantic_serializer__.to_json(answer)
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def all_operations() -> tuple[Operation, ...]:
    """Consent routes here, then sending and reconciliation (server.api_messages)."""
    from server.api_messages import MESSAGE_OPERATIONS

    return OPERATIONS + MESSAGE_OPERATIONS


def setup_api_routes(app: web.Application) -> None:
    for operation in all_operations():
        app.router.add_route(operation.method, operation.path, guarded(operation))
