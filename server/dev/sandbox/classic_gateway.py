"""The sandbox's classic gateway (``POST /gateway.do``): checks each call as Alipay does and
answers signed with the stand-in Alipay key, encrypted when the request was.

Checks, with ``verify`` (the code our client signs with is the same package, but the client's
own tests check it against the official SDK): every common param present, the app's id, the
RSA2/RSA signature over the V2 sign content with the dev app's public key, and the AES content
when ``encrypt_type=AES``. Then:

    templatemessage.send     one-time: takes one of the user's acceptances; long-term: needs the
                             subscription open; else 40004. Delivered sends go to the record.
    subscribe.query          the user's subscriptions as the record holds them
    anything else            40002 ``isv.invalid-method``
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from server.dev.sandbox import classic_protocol as protocol
from server.dev.sandbox.platform import SandboxPlatform
from verify import SignRule, SignType, VerificationError, parse_sign_type, sign, sign_content
from verify.aes import aes_decrypt, aes_encrypt
from verify.form import normalize_charset
from verify.openapi import response_node_name
from verify.signing import verify_signature

NO_SUBSCRIPTION = "SANDBOX_NO_SUBSCRIPTION"  # the sandbox's own: the real code is not documented
NO_SUBSCRIPTION_MESSAGE = (
    "the user holds no subscription to this template on the sandbox (run.py simulate subscribe)"
)


class ClassicGateway:
    def __init__(self, platform: SandboxPlatform) -> None:
        self._platform = platform

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(request.query)
        form.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        try:
            biz = self._checked_biz(form)
        except (VerificationError, ValueError) as problem:
            return self._answer(protocol.ERROR_NODE, protocol.refusal_node(str(problem)), False)
        method = form["method"]
        node = self._act(method, biz)
        encrypt = form.get("encrypt_type") == "AES"
        return self._answer(response_node_name(method), node, encrypt)

    def _checked_biz(self, form: Mapping[str, str]) -> Mapping[str, Any]:
        """The call's decoded ``biz_content``; ``ValueError`` saying why it is refused."""
        missing = protocol.missing_params(form)
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        if form["app_id"] != self._platform.app_id:
            raise ValueError("the app_id is not the sandbox's dev app")
        charset = normalize_charset(form["charset"])
        content = sign_content(form, SignRule.V2).encode(charset)
        sign_type = parse_sign_type(form["sign_type"])
        verify_signature(self._platform.app_public_key, content, form["sign"], sign_type)
        text = form["biz_content"]
        if form.get("encrypt_type") == "AES":
            if self._platform.encrypt_key is None:
                raise ValueError("encrypted biz_content but the app has no AES key")
            text = aes_decrypt(self._platform.encrypt_key, text, charset)
        biz = json.loads(text)
        if not isinstance(biz, dict):
            raise ValueError("biz_content is not a JSON object")
        return biz

    def _act(self, method: str, biz: Mapping[str, Any]) -> dict[str, Any]:
        if method == protocol.SEND_METHOD:
            return self._send(biz)
        if method == protocol.QUERY_METHOD:
            return self._query(biz)
        return protocol.unknown_method_node(method)

    def _send(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        user = str(biz.get("to_user_id") or biz.get("to_open_id") or "")
        template = str(biz.get("user_template_id") or "")
        if template not in self._platform.templates:
            return protocol.rejected_node("USER_TEMPLATE_ILLEGAL", "模板非法")
        if not self._platform.record.take_send(user, template):
            return protocol.rejected_node(NO_SUBSCRIPTION, NO_SUBSCRIPTION_MESSAGE)
        self._platform.record.deliver(
            user,
            self._platform.clock(),
            channel="mini_template",
            template_id=template,
            page=biz.get("page", ""),
            data=json.loads(str(biz.get("data") or "{}")),
        )
        return protocol.success_node()

    def _query(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        who = str(biz.get("user_id") or biz.get("open_id") or "")
        relations = []
        for template in biz.get("template_id_list") or []:
            known = self._platform.record.relation(who, str(template))
            if known is not None:
                relations.append(
                    protocol.subscribe_relation(str(template), known["state"], known["type"])
                )
        return protocol.query_node(relations)

    def _answer(self, name: str, node: Mapping[str, Any], encrypt: bool) -> web.Response:
        text = protocol.node_text(node)
        if encrypt and self._platform.encrypt_key is not None:
            text = protocol.encrypted_node_text(aes_encrypt(self._platform.encrypt_key, text))
        signature = sign(self._platform.alipay_private_key, text.encode("utf-8"), SignType.RSA2)
        body = protocol.answer_text(name, text, signature)
        return web.Response(text=body, content_type="text/html", charset="utf-8")
