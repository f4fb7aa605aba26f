"""The /v1 routes of sending and reconciliation, in the operation table shape of
``server.api.operations``."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, RootModel

from server.api.keys import RECONCILER, SENDER
from server.api.operations import (
    BODY_ERRORS,
    GRANT,
    Operation,
    idempotency_key,
    path_value,
)
from server.appkeys import STORE
from server.consent.ledger import ConsentLedger
from server.consent.reconcile import SyncAnswer
from server.consent.views import USER_ID_PATTERN
from server.errors import NotFound, ValidationFailed
from server.sending.channels.registry import SendBody
from server.sending.messages import MessageView, StoredMessage
from server.sending.settle import SettleRequest
from server.web.json_body import read_json, read_model

_IDENTIFIER = re.compile(USER_ID_PATTERN)


class SendRequest(RootModel[SendBody]):
    """One send; ``channel`` says which platform and which body (docs/sending.md). The union
    comes from the channel registry (``server.sending.channels.registry.SEND_CHANNELS``)."""


async def send_message(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    key = idempotency_key(request)
    body: Any = await read_json(request)
    if not isinstance(body, dict):
        body = {"channel": None}
    return await request.app[SENDER].send(app_id, body, key)


async def get_message(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    message_id = request.match_info["message_id"]
    message = await request.app[STORE].get_message(app_id, message_id)
    if message is None:
        raise NotFound("no such message for this app")
    return StoredMessage.of(message)


async def settle_message(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    message_id = path_value(request, "message_id")
    verdict = await read_model(request, SettleRequest)
    who = request[GRANT].identity
    return await request.app[SENDER].settle(app_id, message_id, verdict, who)


async def sync_subscriptions(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    user_id = path_value(request, "user_id")
    templates = request.query.getall("template_id", [])
    if not all(_IDENTIFIER.fullmatch(template) for template in templates):
        # They go to the platform as they are: refuse what no template id looks like.
        raise ValidationFailed("template_id must be 1-64 letters, digits, '_' or '-'")
    return await request.app[RECONCILER].sync_user(app_id, user_id, templates or None)


MESSAGE_OPERATIONS = (
    Operation(
        "POST",
        "/v1/apps/{app_id}/messages",
        "sendMessage",
        "Send a message if, and only if, the consent ledger allows it (spent exactly once)",
        "send",
        send_message,
        MessageView,
        SendRequest,
        headers=("Idempotency-Key",),
        accepted=True,
        errors=(
            *BODY_ERRORS,
            "idempotency_key_required",
            "idempotency_conflict",
            "consent_required",
            "unknown_channel",
            "template_not_registered",
            "template_data_mismatch",
            "keyword_too_long",
            "unknown_top_app",
            "weekly_limit",
            "app_not_ready",
            "platform_unavailable",
        ),
    ),
    Operation(
        "GET",
        "/v1/apps/{app_id}/messages/{message_id}",
        "getMessage",
        "A message's status, attempts, platform codes and timestamps",
        "read",
        get_message,
        MessageView,
        errors=("not_found",),
    ),
    Operation(
        "POST",
        "/v1/apps/{app_id}/messages/{message_id}:settle",
        "settleMessage",
        "Settle a message whose outcome is unknown: delivered keeps its credit spent, "
        "not_delivered refunds it; the reason and who settled it are kept as evidence",
        "send",
        settle_message,
        MessageView,
        SettleRequest,
        errors=(*BODY_ERRORS, "message_not_found", "message_not_unknown"),
    ),
    Operation(
        "POST",
        "/v1/apps/{app_id}/users/{user_id}/subscriptions:sync",
        "syncSubscriptions",
        "Ask Alipay (subscribe.query) what this user subscribed and record it",
        "write",
        sync_subscriptions,
        SyncAnswer,
        query=("template_id",),
        errors=("platform_unavailable",),
    ),
)
