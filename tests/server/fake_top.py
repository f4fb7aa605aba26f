"""A fake TOP router (``POST /router/rest``) on 127.0.0.1, scriptable, recording every request.

It checks what it receives with its *own* reference signer (recipe T1: stdlib hashlib/hmac, written
here from the rules, never ``verify.top``), pinned to the notes' known-answer vectors by the
tests. As the real SDKs differ (Java and the new Python SDK put system params in the query, Node
everything in the form), query and form params are merged before anything is checked (T2).

Checks, in order, each answered like the gateway in a 200: unknown ``app_key`` 29, bad ``sign``
25, ``timestamp`` not GMT+8 ``yyyy-MM-dd HH:mm:ss`` within 10 minutes of the fake's clock 31,
``v`` not 2.0 32, ``format`` not json 23, an object param that is not JSON 41. Then the next
scripted reply (default: success in the shape ``simplify`` asks for). The order, the codes and
the answers' shapes are the package's ``server.dev.sandbox.top_protocol``, which the dev sandbox
answers with too; the signature check stays the fake's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.test_utils import TestServer

from server.dev.sandbox import top_protocol as protocol
from server.dev.sandbox.top_protocol import PATH


def reference_top_sign(params: Mapping[str, str], secret: str, sign_method: str) -> str:
    """The notes' algorithm, restated independently of the code under test."""
    pairs = sorted(
        (key, value)
        for key, value in params.items()
        if key != "sign" and key.strip() and value.strip()
    )
    text = "".join(key + value for key, value in pairs).encode("utf-8")
    key = secret.encode("utf-8")
    if sign_method == "md5":
        return hashlib.md5(key + text + key, usedforsecurity=False).hexdigest().upper()
    if sign_method == "hmac":
        return hmac.new(key, text, "md5").hexdigest().upper()
    if sign_method == "hmac-sha256":
        return hmac.new(key, text, "sha256").hexdigest().upper()
    raise ValueError(sign_method)


@dataclass(frozen=True)
class TopReply:
    """What the fake answers. ``body=None``: a success envelope for the method called."""

    status: int = 200
    body: str | None = None
    result: Mapping[str, Any] | None = None  # the success envelope's "result"
    hang: bool = False  # wait for FakeTop.release before answering


def success(**result: Any) -> TopReply:
    return TopReply(result={"success": True, **result})


def error(code: int, msg: str, sub_code: str | None = None, sub_msg: str | None = None) -> TopReply:
    document = protocol.error_document(code, msg, "fake-request-id", sub_code, sub_msg)
    return TopReply(body=json.dumps(document, ensure_ascii=False))


def business_failure(**result: Any) -> TopReply:
    return TopReply(result={"success": False, **result})


def raw(status: int, body: str) -> TopReply:
    return TopReply(status=status, body=body)


def hang() -> TopReply:
    return TopReply(hang=True)


@dataclass
class ReceivedTop:
    query: dict[str, str]
    form: dict[str, str]
    params: dict[str, str]  # merged, form wins
    content_type: str
    refused: int | None  # the error code the fake's own checks answered, None if they passed


@dataclass
class FakeTop:
    secrets: Mapping[str, str]  # app_key -> app_secret
    clock: Callable[[], datetime]
    received: list[ReceivedTop] = field(default_factory=list)
    replies: deque[TopReply] = field(default_factory=deque)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _server: TestServer | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self.url

    async def close(self) -> None:
        self.release.set()
        if self._server is not None:
            await self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url(PATH))

    def script(self, *replies: TopReply) -> None:
        self.replies.extend(replies)

    async def _handle(self, request: web.Request) -> web.Response:
        query = dict(parse_qsl(request.query_string, keep_blank_values=True))
        form = dict(parse_qsl((await request.read()).decode("utf-8"), keep_blank_values=True))
        params = {**query, **form}
        refused = self._check(params)
        self.received.append(
            ReceivedTop(query, form, params, request.headers.get("Content-Type", ""), refused)
        )
        if refused is not None:
            return _json({"error_response": {"code": refused, "msg": "refused by the fake"}})
        reply = self.replies.popleft() if self.replies else success()
        if reply.hang:
            await self.release.wait()
        if reply.body is not None:
            return web.Response(
                status=reply.status, text=reply.body, content_type="application/json"
            )
        result = reply.result or {"success": True}
        return _json(protocol.success_document(params, result, "fake-rid"), reply.status)

    def _check(self, params: Mapping[str, str]) -> int | None:
        secret = self.secrets.get(params.get("app_key", ""))
        if secret is None:
            return protocol.UNKNOWN_APP_KEY
        try:
            expected = reference_top_sign(params, secret, params.get("sign_method", "md5"))
        except ValueError:
            return protocol.BAD_SIGNATURE
        if not hmac.compare_digest(expected, params.get("sign", "")):
            return protocol.BAD_SIGNATURE
        return protocol.form_refusal(params, self.clock())


def _json(document: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(document, ensure_ascii=False),
        content_type="application/json",
    )
