"""The /v1 routes of sending and reconciliation, in the same operation table shape as server.api."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from server.api import BODY_ERRORS, Operation, idempotency_key, path_value
from server.appkeys import RECONCILER, SENDER, STORE
from server.channels.mini_template import MiniTemplateSend
from server.consent import ConsentLedger
from server.errors import NotFound
from server.jsonbody import read_json
from server.message_models import MessageView, StoredMessage
from server.reconcile import SyncAnswer


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


async def sync_subscriptions(request: web.Request, ledger: ConsentLedger, app_id: str) -> BaseModel:
    user_id = path_value(request, "user_id")
    templates = request.query.getall("template_id", [])
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
        MiniTemplateSend,
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
