"""A fake Alipay OpenAPI gateway (classic ``gateway.do``): a real aiohttp server on 127.0.0.1.

It checks every request the way Alipay does, with an implementation that is not ours: the sign
content and the RSA check come from the official SDK (``tests.oracle``), AES is undone with
``cryptography`` directly. A request that does not verify is refused (``isv.invalid-signature``)
and kept in ``refused``; one that verifies is kept in ``calls`` with its form params and its
decoded (and decrypted) ``biz_content``.

Answers are signed with the official SDK over the exact node text the fake writes, in Alipay's
shape ``{"<method with _>_response": NODE, ["alipay_cert_sn": SN,] "sign": SIG}``. The shapes
(nodes, envelope, the required params) are the package's ``server.dev.sandbox.classic_protocol``,
which the dev sandbox answers with too; the signatures and the AES stay the fake's own. What each
method answers is scripted with a queue of ``Reply`` values (``fake.script(method, ...)``);
with the queue empty a method answers ``success()``, and ``subscribe.query`` answers from
``fake.relations``. ``hang()`` blocks until ``close()`` so that the client times out.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from aiohttp.test_utils import TestServer
from alipay.aop.api.util import SignatureUtils
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from server.dev.sandbox import classic_protocol as protocol
from server.dev.sandbox.classic_protocol import GATEWAY_PATH as GATEWAY_PATH
from server.dev.sandbox.classic_protocol import QUERY_METHOD as QUERY_METHOD
from server.dev.sandbox.classic_protocol import SEND_METHOD as SEND_METHOD
from tests.oracle import oracle_content, oracle_verify
from tests.pki import pkcs1_base64, rsa_key
from tests.server.fake_aes import aes_decrypt, aes_encrypt

ReplyKind = Literal["signed", "unsigned", "bad_signature", "encrypted", "hang", "http_500"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``node`` None: the method's default success node."""

    kind: ReplyKind
    node: Mapping[str, Any] | None = None
    aes_key: bytes | None = None  # "encrypted": encrypt with this key instead of the app's


def success(**fields: Any) -> Reply:
    return Reply("signed", protocol.success_node(**fields))


def transient() -> Reply:
    """``20000``: the gateway's own "try again" answer."""
    return Reply("signed", protocol.transient_node())


def rejected(sub_code: str, sub_msg: str = "模板非法") -> Reply:
    """``40004``: a definite business failure."""
    return Reply("signed", protocol.rejected_node(sub_code, sub_msg))


def unsigned() -> Reply:
    """A ``10000`` with no ``sign`` at all."""
    return Reply("unsigned")


def badly_signed() -> Reply:
    """A ``10000`` signed by a key Subgate does not trust."""
    return Reply("bad_signature")


def encrypted(aes_key: bytes | None = None) -> Reply:
    """A ``10000`` whose node is AES-encrypted (the signature covers the quoted ciphertext),
    with the app's key unless ``aes_key`` is given."""
    return Reply("encrypted", aes_key=aes_key)


def hang() -> Reply:
    """No answer until the fake is closed: the client's timeout has to fire."""
    return Reply("hang")


def http_500() -> Reply:
    return Reply("http_500")


@dataclass(frozen=True)
class ReceivedCall:
    """A request whose signature the oracle verified."""

    method: str
    params: dict[str, str]  # every form/query param as received (biz_content still encrypted)
    biz: dict[str, Any]  # biz_content, decrypted when encrypt_type=AES, then JSON-decoded
    reply: ReplyKind


@dataclass(frozen=True)
class RefusedCall:
    params: dict[str, str]
    reason: str


@dataclass
class FakeAlipay:
    """The gateway. Key roles as in tests/server/conftest.py: rsa_key(1) is Alipay's."""

    alipay_key: RSAPrivateKey = field(default_factory=lambda: rsa_key(1))
    stranger_key: RSAPrivateKey = field(default_factory=lambda: rsa_key(3))  # "badly signed"
    app_public_key: RSAPublicKey = field(default_factory=lambda: rsa_key(2).public_key())
    encrypt_key: bytes | None = None  # the app's AES key, when it uses content encryption
    alipay_cert_sn: str | None = None  # put before "sign" in each answer (certificate mode)
    # subscribe.query answers: (user id or open id, template id) -> (subscribe_state, type)
    relations: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    calls: list[ReceivedCall] = field(default_factory=list)
    refused: list[RefusedCall] = field(default_factory=list)
    _scripts: dict[str, deque[Reply]] = field(default_factory=lambda: defaultdict(deque))
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _server: TestServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(GATEWAY_PATH, self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        self._release.set()  # let every hung handler finish
        if self._server is not None:
            await self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return str(self._server.make_url(GATEWAY_PATH))

    # -- scripting and inspection ------------------------------------------------------------

    def script(self, method: str, *replies: Reply) -> None:
        """Answer the next calls of ``method`` with ``replies``, in order."""
        self._scripts[method].extend(replies)

    def subscribed(
        self, user: str, template: str, state: str = "1", subscribe_type: str = "onetime"
    ) -> None:
        """What subscribe.query says about ``user`` and ``template``."""
        self.relations[(user, template)] = (state, subscribe_type)

    def calls_of(self, method: str) -> list[ReceivedCall]:
        return [call for call in self.calls if call.method == method]

    @property
    def sends(self) -> list[ReceivedCall]:
        return self.calls_of(SEND_METHOD)

    @property
    def queries(self) -> list[ReceivedCall]:
        return self.calls_of(QUERY_METHOD)

    # -- the gateway -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        form = dict(request.query)
        form.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        problem = self._refusal(form)
        if problem is not None:
            self.refused.append(RefusedCall(form, problem))
            refusal = protocol.refusal_node(problem)
            return self._answer(protocol.ERROR_NODE, Reply("signed", refusal))
        method = form["method"]
        queue = self._scripts[method]
        reply = queue.popleft() if queue else success()
        biz = self._biz(form)
        self.calls.append(ReceivedCall(method, form, biz, reply.kind))
        if reply.kind == "hang":
            await self._release.wait()
            return web.Response(status=504, text="released at teardown")
        if reply.kind == "http_500":
            return web.Response(status=500, text="Internal Server Error")
        default = success().node
        assert default is not None
        node: dict[str, Any] = dict(reply.node if reply.node is not None else default)
        if method == QUERY_METHOD and node.get("code") == "10000":
            node.setdefault("show_component", True)
            node.setdefault("subscribe_relations", self._relations(biz))
        name = method.replace(".", "_") + "_response"  # the fake's own reading of the rule
        return self._answer(name, Reply(reply.kind, node, reply.aes_key))

    def _refusal(self, form: Mapping[str, str]) -> str | None:
        missing = protocol.missing_params(form)
        if missing:
            return f"missing {', '.join(missing)}"
        if form["sign_type"] != "RSA2":
            return "sign_type must be RSA2"
        content = oracle_content(form, rule="V2").encode(form["charset"])
        if not oracle_verify(content, form["sign"], self.app_public_key):
            return "the signature does not verify with the app public key"
        if form.get("encrypt_type") == "AES" and self.encrypt_key is None:
            return "encrypted biz_content but no AES key"
        return None

    def _biz(self, form: Mapping[str, str]) -> dict[str, Any]:
        content = form["biz_content"]
        if form.get("encrypt_type") == "AES":
            assert self.encrypt_key is not None
            content = aes_decrypt(self.encrypt_key, content)
        decoded: dict[str, Any] = json.loads(content)
        return decoded

    def _relations(self, biz: Mapping[str, Any]) -> list[dict[str, Any]]:
        who = str(biz.get("user_id") or biz.get("open_id"))
        answer = []
        for template in biz.get("template_id_list", []):
            known = self.relations.get((who, template))
            if known is not None:
                state, subscribe_type = known
                answer.append(protocol.subscribe_relation(template, state, subscribe_type))
        return answer

    def _answer(self, name: str, reply: Reply) -> web.Response:
        assert reply.node is not None
        node_text = protocol.node_text(reply.node)
        if reply.kind == "encrypted":
            aes_key = reply.aes_key or self.encrypt_key
            assert aes_key is not None, "encrypted answers need an AES key"
            node_text = protocol.encrypted_node_text(aes_encrypt(aes_key, node_text))
        signature = None
        if reply.kind != "unsigned":
            key = self.stranger_key if reply.kind == "bad_signature" else self.alipay_key
            signature = _sign(pkcs1_base64(key), node_text)
        body = protocol.answer_text(name, node_text, signature, self.alipay_cert_sn)
        return web.Response(text=body, content_type="text/html", charset="utf-8")


@asynccontextmanager
async def running_fake(**options: Any) -> AsyncIterator[FakeAlipay]:
    fake = FakeAlipay(**options)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@functools.lru_cache(maxsize=256)
def _sign(key_pkcs1_base64: str, content: str) -> str:
    """The official SDK's RSA2 signature. PKCS#1 v1.5 is deterministic, so caching it changes no
    answer; it keeps the pure-Python signer off the clock of the client's call timeout."""
    signature: str = SignatureUtils.sign_with_rsa2(key_pkcs1_base64, content, "utf-8")
    return signature
