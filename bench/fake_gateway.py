"""A fake Alipay OpenAPI gateway (classic ``gateway.do``) for the sends benchmark: its own process.

python -m bench.fake_gateway PORT APP_PUBLIC_KEY_PEM ALIPAY_PRIVATE_KEY_PEM

It checks every request the way Alipay does, with code of its own (``cryptography`` directly,
nothing from Subgate's ``verify``): the common params are present, ``sign_type`` is RSA2, and the
signature verifies over the V2 sign content (every param but ``sign``, blank values dropped,
sorted, ``k=v`` joined with ``&``) with the app's public key. A request that does not verify is
counted in ``refused`` and answered ``isv.invalid-signature`` (a definite failure).

A verified ``alipay.open.app.mini.templatemessage.send`` is counted per ``to_user_id`` and per
business key (the ``keyword3`` value, where the benchmark puts the send's Idempotency-Key), and
answered ``10000`` in Alipay's shape ``{"<method>_response": NODE, "sign": SIG}``, the signature
(RSA2, the stand-in Alipay key) over the exact node text. PKCS#1 v1.5 is deterministic, so the
signature of each distinct node text is computed once and reused: the bytes on the wire are the
same as signing every answer. Keys are loaded once, at start.

``GET /stats`` answers the counts as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import json
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SEND_METHOD = "alipay.open.app.mini.templatemessage.send"
COMMON = ("app_id", "method", "format", "charset", "sign_type", "timestamp", "version")


class Stats:
    def __init__(self) -> None:
        self.calls = 0
        self.refused: Counter[str] = Counter()
        self.per_user: Counter[str] = Counter()
        self.per_key: Counter[str] = Counter()

    def as_json(self) -> dict[str, object]:
        repeated = {key: n for key, n in self.per_key.items() if n > 1}
        return {
            "calls": self.calls,
            "refused": dict(self.refused),
            "per_user": dict(self.per_user),
            "keys": len(self.per_key),
            "keys_delivered_more_than_once": repeated,
        }


STATS = web.AppKey("stats", Stats)


class Gateway:
    def __init__(self, app_public: rsa.RSAPublicKey, alipay_private: rsa.RSAPrivateKey) -> None:
        self._app_public = app_public
        self._alipay_private = alipay_private
        self._signatures: dict[str, str] = {}
        self.stats = Stats()

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(request.query)
        form.update(parse_qsl((await request.read()).decode("utf-8"), keep_blank_values=True))
        problem = self._refusal(form)
        if problem is not None:
            self.stats.refused[problem] += 1
            node = {
                "code": "40002",
                "msg": "Invalid Arguments",
                "sub_code": "isv.invalid-signature",
                "sub_msg": problem,
            }
            return self._answer("error_response", node)
        method = form["method"]
        if method == SEND_METHOD:
            biz = json.loads(form["biz_content"])
            data = json.loads(biz.get("data") or "{}")
            self.stats.calls += 1
            self.stats.per_user[str(biz.get("to_user_id") or biz.get("to_open_id"))] += 1
            self.stats.per_key[str(data.get("keyword3", {}).get("value"))] += 1
        return self._answer(
            method.replace(".", "_") + "_response", {"code": "10000", "msg": "Success"}
        )

    def _refusal(self, form: dict[str, str]) -> str | None:
        missing = [name for name in (*COMMON, "biz_content", "sign") if not form.get(name)]
        if missing:
            return "missing " + ",".join(missing)
        if form["sign_type"] != "RSA2":
            return "sign_type is not RSA2"
        content = "&".join(
            f"{key}={form[key]}" for key in sorted(form) if key != "sign" and form[key].strip()
        )
        try:
            signature = base64.b64decode(form["sign"], validate=True)
            self._app_public.verify(
                signature, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, binascii.Error):
            return "the signature does not verify with the app public key"
        return None

    def _answer(self, name: str, node: dict[str, str]) -> web.Response:
        text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
        signature = self._signatures.get(text)
        if signature is None:
            raw = self._alipay_private.sign(
                text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
            )
            signature = self._signatures[text] = base64.b64encode(raw).decode("ascii")
        body = f'{{{json.dumps(name)}:{text},"sign":{json.dumps(signature)}}}'
        return web.Response(text=body, content_type="text/html", charset="utf-8")


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS].as_json())


def build(gateway: Gateway) -> web.Application:
    app = web.Application()
    app[STATS] = gateway.stats
    app.router.add_post("/gateway.do", gateway.handle)
    app.router.add_get("/stats", stats)
    return app


def main() -> None:
    port, app_public_file, alipay_private_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    public = serialization.load_pem_public_key(Path(app_public_file).read_bytes())
    private = serialization.load_pem_private_key(
        Path(alipay_private_file).read_bytes(), password=None
    )
    assert isinstance(public, rsa.RSAPublicKey) and isinstance(private, rsa.RSAPrivateKey)
    app = build(Gateway(public, private))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=_loop())


def _loop() -> asyncio.AbstractEventLoop | None:
    """uvloop when it is installed: a cheaper fake leaves more of the shared CPUs to Subgate."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


if __name__ == "__main__":
    main()
