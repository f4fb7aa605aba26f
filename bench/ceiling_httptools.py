"""The ceiling's work behind httptools instead of aiohttp: a reference, not a target.

python -m bench.ceiling_httptools PORT ALIPAY_PUBLIC_KEY_PEM_FILE

The same form parsing and RSA2 verify as ``bench/ceiling.py``, storing nothing, on uvloop, but
each request parsed by httptools and answered with one write, as Subgate's notification lane
serves them (``server/web/lane.py``). The issue's targets are judged against the aiohttp
ceiling; this one says what is left when aiohttp's request machinery is not paid, so the report
shows what Subgate's own work costs beside the HTTP layer it runs on.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path
from urllib.parse import parse_qsl

import httptools
import uvloop
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SUCCESS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 7\r\n\r\n"
    b"success"
)
FAIL = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 4\r\n\r\nfail"
)


class Notify(asyncio.Protocol):
    def __init__(self, key: rsa.RSAPublicKey) -> None:
        self._key = key
        self._parser = httptools.HttpRequestParser(self)
        self._body: list[bytes] = []
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        assert self._transport is not None
        body = b"".join(self._body).decode("utf-8")
        fields = dict(parse_qsl(body, keep_blank_values=True))
        signature = base64.b64decode(fields.pop("sign"))
        fields.pop("sign_type", None)
        content = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if fields[k].strip())
        try:
            self._key.verify(
                signature, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            self._transport.write(FAIL)
            return
        self._transport.write(SUCCESS)


async def serve(port: int, key: rsa.RSAPublicKey) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Notify(key), "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


def main() -> None:
    port, key_file = int(sys.argv[1]), Path(sys.argv[2])
    key = serialization.load_pem_public_key(key_file.read_bytes())
    assert isinstance(key, rsa.RSAPublicKey)
    uvloop.run(serve(port, key))


if __name__ == "__main__":
    main()
