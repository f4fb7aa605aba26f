"""The sandbox's OpenAPI v3 gateway (``/v3/...``): checks each request's ``Authorization`` as
Alipay does and answers signed with the stand-in Alipay key.

Checks, with ``verify``: the ``ALIPAY-SHA256withRSA`` scheme, the RSA2 signature over the auth
string (verbatim), method, raw request target, raw body and ``alipay-app-auth-token``, the app's
id, a timestamp within ``v3_protocol.TOLERANCE`` and a 32-hex ``alipay-request-id``; a failure
is a signed 401 ``{code, message, links}``. A label send then counts against the platform's
weekly limit (the sixth of a rolling week: 429 ``app-call-limited``, nothing delivered) and is
recorded under the audience Subgate's ledger names it by. The v3 AES body encryption is not
played: requests and answers are plain JSON.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from server.dev.sandbox import v3_protocol as protocol
from server.dev.sandbox.platform import SandboxPlatform
from server.dev.sandbox.record import LABEL_SENDS_PER_WEEK
from server.sending.channels.life_label import ledger_user_id
from verify import SignatureMismatch, SignType, sign
from verify.alipay_v3 import v3_response_content, v3_sign_content
from verify.signing import verify_signature

LINKS = [{"link": "run.py simulate", "desc": "the dev sandbox: see the README"}]


class V3Gateway:
    def __init__(self, platform: SandboxPlatform) -> None:
        self._platform = platform

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        refused = self._refusal(request.method, request.raw_path, headers, body)
        if refused is not None:
            return self._answer(401, protocol.error_document(refused, "refused", LINKS))
        if request.path != protocol.LABEL_SEND_PATH or request.method != "POST":
            message = f"the sandbox has no {request.method} {request.path}"
            return self._answer(404, protocol.error_document("invalid-method", message, LINKS))
        return self._label_send(body)

    def _refusal(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        parts = protocol.split_authorization(headers.get("authorization", ""))
        if parts is None:
            return "missing-signature"
        auth_string, signature, auth = parts
        try:
            token = headers.get("alipay-app-auth-token")
            content = v3_sign_content(auth_string, method, target, body.decode("utf-8"), token)
            verify_signature(
                self._platform.app_public_key, content.encode("utf-8"), signature, SignType.RSA2
            )
        except (SignatureMismatch, ValueError):  # UnicodeDecodeError is a ValueError
            return "invalid-signature"
        if auth.get("app_id") != self._platform.app_id:
            return "invalid-app-id"
        if not self._fresh(auth.get("timestamp", "")):
            return "invalid-timestamp"
        if not protocol.REQUEST_ID.match(headers.get("alipay-request-id", "")):
            return "invalid-parameter"
        return None

    def _fresh(self, timestamp_ms: str) -> bool:
        if not timestamp_ms.isdigit():
            return False
        now_ms = self._platform.clock().timestamp() * 1000
        return abs(int(timestamp_ms) - now_ms) <= protocol.TOLERANCE.total_seconds() * 1000

    def _label_send(self, body: bytes) -> web.Response:
        try:
            send: Any = json.loads(body)
            audience = ledger_user_id(send["filter"])
        except (ValueError, TypeError, KeyError):
            return self._answer(
                400, protocol.error_document("invalid-parameter", "no filter", LINKS)
            )
        now = self._platform.clock()
        if not self._platform.record.take_label_send(self._platform.app_id, now):
            message = f"the label-send API may be called {LABEL_SENDS_PER_WEEK} times a week"
            return self._answer(429, protocol.error_document(protocol.CALL_LIMITED, message))
        material = send.get("material")
        self._platform.record.deliver(
            audience, now, channel="life_label", filter=send["filter"], material=material
        )
        return self._answer(200, "{}")

    def _answer(self, status: int, body: str) -> web.Response:
        timestamp = str(int(self._platform.clock().timestamp() * 1000))
        nonce = uuid.uuid4().hex
        content = v3_response_content(timestamp, nonce, body)
        signature = sign(self._platform.alipay_private_key, content.encode("utf-8"), SignType.RSA2)
        headers = protocol.answer_headers(timestamp, nonce, signature, f"sandbox-{nonce}")
        data = body.encode("utf-8")
        return web.Response(
            status=status, body=data, headers=headers, content_type="application/json"
        )
