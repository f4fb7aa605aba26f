"""The send ceiling: a bare aiohttp client that signs and posts sends, storing nothing.

python -m bench.send_ceiling GATEWAY_URL APP_ID APP_PRIVATE_PEM ALIPAY_PUBLIC_PEM SENDERS

What a correct sender cannot do without, and nothing else: build the
``alipay.open.app.mini.templatemessage.send`` request (the same biz content as ``bench/sends.py``
asks Subgate for), sign it RSA2 with ``cryptography`` (nothing from Subgate's ``verify``), post it
to the fake gateway (``bench.fake_gateway``), and accept the answer only when its signature
verifies and its code is 10000. No ledger, no credit, no idempotency, no store: the gap between
this and Subgate's gated sends at the same concurrency is what consent-gating costs on this
machine. It runs as a process of its own on uvloop, as Subgate does, so that the bench reads its
CPU and context switches and can strace it like any target.

It reads one line per run on stdin, ``SECONDS FIRST_USER``: SENDERS coroutines send, each to the
next user from FIRST_USER on, until SECONDS have passed; it answers one JSON line. ``ready`` is
printed once the keys are loaded.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import uvloop
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

METHOD = "alipay.open.app.mini.templatemessage.send"
RESPONSE_KEY = METHOD.replace(".", "_") + "_response"
TEMPLATE = "ac768fca1ce245ccae9404bb5243c49b"  # bench.service.ONE_TIME
GMT8 = timezone(timedelta(hours=8))
FORM = {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}


class Sender:
    def __init__(
        self, url: str, app_id: str, app_private: rsa.RSAPrivateKey, alipay: rsa.RSAPublicKey
    ) -> None:
        self._url, self._app_id = url, app_id
        self._app_private, self._alipay = app_private, alipay

    def request(self, user: int) -> bytes:
        """The signed form of one send to ``user``, as the classic gateway takes it."""
        key = f"ceiling-{user}"
        data = {
            "keyword1": {"value": "订单已发货"},
            "keyword2": {"value": "2026-11-23 16:00"},
            "keyword3": {"value": key},
        }
        biz = {
            "to_user_id": f"2088{user:012d}",
            "user_template_id": TEMPLATE,
            "page": f"pages/orders/detail?id={user}",
            "data": json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        }
        params = {
            "app_id": self._app_id,
            "method": METHOD,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": datetime.now(GMT8).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        content = "&".join(f"{k}={params[k]}" for k in sorted(params) if params[k])
        signature = self._app_private.sign(
            content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
        )
        params["sign"] = base64.b64encode(signature).decode("ascii")
        return urlencode(params).encode("ascii")

    def accepted(self, text: str) -> bool:
        """Code 10000 in a node whose signature (over the node's exact text) verifies."""
        start = text.find(f'"{RESPONSE_KEY}":')
        end = text.rfind(',"sign":')
        if start < 0 or end < 0:
            return False
        node = text[start + len(RESPONSE_KEY) + 3 : end]
        signature = base64.b64decode(json.loads(text[end + 8 : text.rindex("}")]))
        try:
            self._alipay.verify(
                signature, node.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return False
        return bool(json.loads(node).get("code") == "10000")

    async def send(self, session: aiohttp.ClientSession, user: int) -> bool:
        async with session.post(self._url, data=self.request(user), headers=FORM) as answer:
            return self.accepted(await answer.text())


async def run(
    sender: Sender, session: aiohttp.ClientSession, senders: int, seconds: float, first: int
) -> dict[str, Any]:
    """``senders`` closed loops for ``seconds``: sends, failures, rate and latency."""
    users = itertools.count(first)
    latencies: list[float] = []
    failures = 0
    started = time.perf_counter()
    end = started + seconds

    async def loop() -> None:
        nonlocal failures
        while time.perf_counter() < end:
            began = time.perf_counter()
            if await sender.send(session, next(users)):
                latencies.append(time.perf_counter() - began)
            else:
                failures += 1

    await asyncio.gather(*(loop() for _ in range(senders)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "sends": len(latencies),
        "failures": failures,
        "seconds": round(elapsed, 3),
        "sends_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 3) if ordered else 0.0,
        "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 3) if ordered else 0.0,
    }


async def serve_runs(sender: Sender, senders: int) -> None:
    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector) as session:
        print("ready", flush=True)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().split():
            seconds, first = float(line[0]), int(line[1])
            result = await run(sender, session, senders, seconds, first)
            print(json.dumps(result), flush=True)


def main() -> None:
    url, app_id, private_file, public_file, senders = sys.argv[1:6]
    private = serialization.load_pem_private_key(Path(private_file).read_bytes(), password=None)
    public = serialization.load_pem_public_key(Path(public_file).read_bytes())
    assert isinstance(private, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey)
    uvloop.run(serve_runs(Sender(url, app_id, private, public), int(senders)))


if __name__ == "__main__":
    main()
