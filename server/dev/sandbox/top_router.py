"""The sandbox's TOP router (``POST /router/rest``): checks each call as the router does and
records what it delivers.

The checks run in the router's order (``top_protocol``): the app key, the signature
(``verify.top.top_sign`` with the dev TOP app's secret), then the form. A jym push is delivered
to its ``user_id``, a workcore batch to each of its ``receiver``; every other method is code 22
(invalid method), as the router answers a name it does not know.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from server.dev.sandbox import top_protocol as protocol
from server.dev.sandbox.platform import SandboxPlatform
from server.platforms.top import JYM_APPPUSH_SEND, WORKCORE_BATCH_SEND
from verify import VerificationError
from verify.top import top_sign

INVALID_METHOD = 22


class TopRouter:
    def __init__(self, platform: SandboxPlatform) -> None:
        self._platform = platform

    async def handle(self, request: web.Request) -> web.Response:
        query = dict(parse_qsl(request.query_string, keep_blank_values=True))
        form = dict(parse_qsl((await request.read()).decode("utf-8"), keep_blank_values=True))
        params = {**query, **form}
        request_id = uuid.uuid4().hex
        refused = self._refusal(params)
        if refused is not None:
            return _json(protocol.error_document(refused, "refused by the sandbox", request_id))
        method = params.get("method", "")
        if method not in (JYM_APPPUSH_SEND, WORKCORE_BATCH_SEND):
            document = protocol.error_document(INVALID_METHOD, "Invalid method", request_id)
            return _json(document)
        self._deliver(method, params)
        return _json(protocol.success_document(params, {"success": True}, request_id))

    def _refusal(self, params: Mapping[str, str]) -> int | None:
        if params.get("app_key") != self._platform.top_app_key:
            return protocol.UNKNOWN_APP_KEY
        try:
            expected = top_sign(params, self._platform.top_secret, params.get("sign_method", ""))
        except VerificationError:
            return protocol.BAD_SIGNATURE
        if not hmac.compare_digest(expected, params.get("sign", "")):
            return protocol.BAD_SIGNATURE
        return protocol.form_refusal(params, self._platform.clock())

    def _deliver(self, method: str, params: Mapping[str, str]) -> None:
        now, record = self._platform.clock(), self._platform.record
        if method == JYM_APPPUSH_SEND:
            record.deliver(
                params.get("user_id", ""),
                now,
                channel="jym_push",
                template_id=params.get("template_id"),
                message_id=params.get("message_id"),
                push_content=json.loads(params.get("push_content_dto") or "{}"),
            )
            return
        batch: Any = json.loads(params.get("batch_message_d_t_o") or "{}")
        for receiver in json.loads(batch.get("receiver") or "[]"):
            record.deliver(str(receiver), now, channel="workcore", action=batch.get("action"))


def _json(document: Mapping[str, Any]) -> web.Response:
    return web.Response(
        text=json.dumps(document, ensure_ascii=False), content_type="application/json"
    )
