"""A fake Alipay OpenAPI v3 gateway on 127.0.0.1, scriptable, recording every request.

Independent of the code under test (recipe T3/T4): requests are checked and answers signed with
``cryptography`` directly, never ``verify/``. The ``Authorization`` header is split on the *last*
``,sign=`` and the auth string used verbatim; the signed content is rebuilt from the method, the
*raw* request target (query included, exactly as received), the raw body and the
``alipay-app-auth-token`` header. Refusals are answered as Alipay documents them (4xx
``{code, message, links}``), signed like any other answer. The shapes (the error document, the
answer's headers, the scheme and the request rules) are the package's
``server.dev.sandbox.v3_protocol``, which the dev sandbox answers with too.

With ``encrypt_key`` (the app's 接口内容加密 on) the fake requires every body to come AES-encrypted
(``alipay-encrypt-type: AES``, ``text/plain``, signed over the ciphertext), refuses anything else
with ``decryption-error``, and answers a 2xx encrypted too, signed over its ciphertext.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from server.dev.sandbox import v3_protocol as protocol
from tests.server.fake_aes import aes_decrypt, aes_encrypt

TOLERANCE = protocol.TOLERANCE

Signing = Literal["good", "none", "wrong_key", "no_newline", "tampered"]


def rsa_sign(key: RSAPrivateKey, content: str) -> str:
    signature = key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa_verifies(key: RSAPublicKey, content: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


@dataclass(frozen=True)
class V3Reply:
    status: int = 200
    body: str = '{"result":"ok"}'
    signing: Signing = "good"
    alipay_sn: str | None = None  # overrides the fake's own alipay-sn
    omit_sn: bool = False
    hang: bool = False  # wait for FakeAlipayV3.release before answering
    plain: bool = False  # answer an encrypted request's 2xx unencrypted all the same
    aes_key: bytes | None = None  # encrypt a 2xx with this key instead of the app's


def v3_error(
    status: int, code: str, message: str, links: object = None, signing: Signing = "good"
) -> V3Reply:
    return V3Reply(
        status=status, body=protocol.error_document(code, message, links), signing=signing
    )


@dataclass
class ReceivedV3:
    method: str
    target: str  # the raw request target: path and query as sent
    headers: dict[str, str]  # lower-case names
    body: bytes
    auth: dict[str, str]  # the auth string's items
    refused: str | None  # the error code the fake's own checks answered, None if they passed
    content: bytes = b""  # the body's JSON text, decrypted when it came encrypted


@dataclass
class FakeAlipayV3:
    app_id: str
    app_public_key: RSAPublicKey
    alipay_private_key: RSAPrivateKey
    clock: Callable[[], datetime]
    other_private_key: RSAPrivateKey  # signs the "wrong_key" answers
    alipay_sn: str | None = None  # certificate mode: sent as alipay-sn
    app_cert_sn: str | None = None  # certificate mode: expected in the auth string
    root_cert_sn: str | None = None  # certificate mode: expected in alipay-root-cert-sn
    encrypt_key: bytes | None = None  # the app's AES key: bodies must come encrypted with it
    received: list[ReceivedV3] = field(default_factory=list)
    replies: deque[V3Reply] = field(default_factory=deque)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _server: TestServer | None = None
    _count: int = 0

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
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
        return str(self._server.make_url("")).rstrip("/")

    def script(self, *replies: V3Reply) -> None:
        self.replies.extend(replies)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        auth, refused = self._check(request.method, request.raw_path, headers, body)
        content, undecryptable = self._content(headers, body)
        refused = refused or undecryptable
        self.received.append(
            ReceivedV3(request.method, request.raw_path, headers, body, auth, refused, content)
        )
        if refused is not None:
            reply = v3_error(401, refused, "refused by the fake", [{"link": "x", "desc": "y"}])
        else:
            reply = self.replies.popleft() if self.replies else V3Reply()
        if reply.hang:
            await self.release.wait()
        return self._answer(reply, encrypted=body != content)

    def _content(self, headers: Mapping[str, str], body: bytes) -> tuple[bytes, str | None]:
        """The body's JSON text, and ``decryption-error`` when it is not as the app's
        encryption setting requires (a body-less request has nothing to encrypt)."""
        encrypted = headers.get("alipay-encrypt-type") == "AES"
        if not body or (self.encrypt_key is None and not encrypted):
            return body, None
        plain_type = headers.get("content-type", "").startswith("text/plain")
        if self.encrypt_key is None or not encrypted or not plain_type:
            return body, "decryption-error"
        try:
            return aes_decrypt(self.encrypt_key, body.decode("ascii")).encode("utf-8"), None
        except ValueError:
            return body, "decryption-error"

    def _check(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[dict[str, str], str | None]:
        parts = protocol.split_authorization(headers.get("authorization", ""))
        if parts is None:
            return {}, "missing-signature"
        auth_string, signature, auth = parts
        content = f"{auth_string}\n{method}\n{target}\n".encode() + body + b"\n"
        token = headers.get("alipay-app-auth-token")
        if token:
            content += f"{token}\n".encode()
        if not rsa_verifies(self.app_public_key, content, signature):
            return auth, "invalid-signature"
        if auth.get("app_id") != self.app_id:
            return auth, "invalid-app-id"
        if not self._fresh(auth.get("timestamp", "")):
            return auth, "invalid-timestamp"
        if not protocol.REQUEST_ID.match(headers.get("alipay-request-id", "")):
            return auth, "invalid-parameter"
        if self.app_cert_sn is not None and auth.get("app_cert_sn") != self.app_cert_sn:
            return auth, "missing-app-cert-sn"
        if self.root_cert_sn is not None and headers.get("alipay-root-cert-sn") != (
            self.root_cert_sn
        ):
            return auth, "invalid-alipay-root-cert-sn"
        return auth, None

    def _fresh(self, timestamp_ms: str) -> bool:
        if not timestamp_ms.isdigit():
            return False
        now_ms = self.clock().timestamp() * 1000
        return abs(int(timestamp_ms) - now_ms) <= TOLERANCE.total_seconds() * 1000

    def _answer(self, reply: V3Reply, *, encrypted: bool = False) -> web.Response:
        self._count += 1
        timestamp = str(int(self.clock().timestamp() * 1000))
        nonce = f"fake-nonce-{self._count}"
        if encrypted and reply.status < 300 and reply.body and not reply.plain:
            aes_key = reply.aes_key or self.encrypt_key
            assert aes_key is not None
            reply = replace(reply, body=aes_encrypt(aes_key, reply.body))
        signed_body = reply.body
        content = f"{timestamp}\n{nonce}\n{signed_body}\n"
        key = self.alipay_private_key
        if reply.signing == "wrong_key":
            key = self.other_private_key
        elif reply.signing == "no_newline":
            content = content[:-1]
        sent_body = reply.body + " " if reply.signing == "tampered" else reply.body
        trace_id = f"trace-{self._count}"
        headers = {"alipay-trace-id": trace_id}
        if reply.signing != "none":
            sn = None if reply.omit_sn else reply.alipay_sn or self.alipay_sn
            signature = rsa_sign(key, content)
            headers = protocol.answer_headers(timestamp, nonce, signature, trace_id, sn)
        return web.Response(
            status=reply.status,
            body=sent_body.encode("utf-8"),
            headers=headers,
            content_type="application/json",
        )
