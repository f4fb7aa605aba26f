"""Notifications posted at a steady rate, for latency at a load below capacity.

python -m bench.paced URL BODIES RATE SECONDS OFFSET

Open loop: the n-th notification is posted at start + n / RATE whether or not earlier ones were
answered (each on its own task), so a slow answer shows as latency, not as a slower load. Prints
how many were answered ``success``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import uvloop
from aiohttp import ClientSession, TCPConnector

HEADERS = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


async def post_paced(url: str, bodies: list[bytes], rate: float, seconds: float) -> int:
    count = min(len(bodies), int(rate * seconds))
    answered: list[bool] = []

    async def post(session: ClientSession, body: bytes) -> None:
        async with session.post(url, data=body, headers=HEADERS) as answer:
            answered.append((await answer.text()) == "success")

    async with ClientSession(connector=TCPConnector(limit=256)) as session:
        started, tasks = time.perf_counter(), []
        for index in range(count):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(session, bodies[index])))
        await asyncio.gather(*tasks)
    return sum(answered)


def main() -> None:
    url, path = sys.argv[1], Path(sys.argv[2])
    rate, seconds, offset = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    bodies = path.read_bytes().splitlines()[offset:]
    print(json.dumps({"success": uvloop.run(post_paced(url, bodies, rate, seconds))}))


if __name__ == "__main__":
    main()
