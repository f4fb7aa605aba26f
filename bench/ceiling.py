"""The ceiling: a bare aiohttp handler that parses the form and verifies RSA2, storing nothing.

python -m bench.ceiling PORT ALIPAY_PUBLIC_KEY_PEM_FILE [uvloop|asyncio]

It runs on the same event loop as the Subgate it is compared with, so that the ratio measures
what Subgate adds, not which loop each side happens to use. ``build`` takes an optional ``keep``,
awaited before a verified notification is answered: ``bench/ceiling_durable.py`` keeps each one
durably there.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qsl

import uvloop
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

Keep = Callable[[bytes], Awaitable[None]]


def build(public_key: rsa.RSAPublicKey, keep: Keep | None = None) -> web.Application:
    async def notify(request: web.Request) -> web.Response:
        body = await request.read()
        fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        signature = base64.b64decode(fields.pop("sign"))
        fields.pop("sign_type", None)
        content = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if fields[k].strip())
        try:
            public_key.verify(
                signature, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return web.Response(text="fail", status=400)
        if keep is not None:
            await keep(body)
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/alipay/notify", notify)
    return app


def main() -> None:
    port, key_file = int(sys.argv[1]), Path(sys.argv[2])
    loop_name = sys.argv[3] if len(sys.argv) > 3 else "asyncio"
    key = serialization.load_pem_public_key(key_file.read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    loop = uvloop.new_event_loop() if loop_name == "uvloop" else asyncio.new_event_loop()
    web.run_app(build(key), host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
