"""The delivery ceiling: a bare aiohttp client posting the same signed payloads, storing nothing.

python -m bench.delivery_ceiling URL PAYLOADS_JSONL CONCURRENCY SECRET

Each line of the file is ``{"id", "body"}`` as Subgate's feed gave the event. Every post is signed
as Standard Webhooks says (HMAC-SHA256 over id, time and body, written here from the spec), with
``CONCURRENCY`` requests in flight, each answer read; the receiver times the first and the last
arrival, as it does for Subgate's pushes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path

import uvloop
from aiohttp import ClientSession, ClientTimeout, TCPConnector


def signature(key: bytes, event_id: str, stamp: str, body: bytes) -> str:
    signed = f"{event_id}.{stamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


async def post_all(
    url: str, payloads: list[tuple[str, bytes]], concurrency: int, key: bytes
) -> int:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    failed = 0

    async def poster(session: ClientSession) -> None:
        nonlocal failed
        while not queue.empty():
            event_id, body = queue.get_nowait()
            stamp = str(int(time.time()))
            headers = {
                "content-type": "application/json",
                "webhook-id": event_id,
                "webhook-timestamp": stamp,
                "webhook-signature": signature(key, event_id, stamp, body),
            }
            async with session.post(url, data=body, headers=headers) as answer:
                await answer.read()
                failed += answer.status >= 300

    connector = TCPConnector(limit=concurrency)
    async with ClientSession(connector=connector, timeout=ClientTimeout(total=10)) as session:
        await asyncio.gather(*(poster(session) for _ in range(concurrency)))
    return failed


def main() -> None:
    url, path, concurrency, secret = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    payloads = []
    for line in path.read_text("utf-8").splitlines():
        item = json.loads(line)
        payloads.append((item["id"], item["body"].encode("utf-8")))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    failed = uvloop.run(post_all(url, payloads, concurrency, key))
    print(json.dumps({"posted": len(payloads), "failed": failed}))


if __name__ == "__main__":
    main()
