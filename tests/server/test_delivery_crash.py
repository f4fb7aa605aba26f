"""At-least-once across ``kill -9``: a real ``run.py serve`` pushing to a receiver in this test
process is killed with SIGKILL while notifications arrive, pushes are in flight and a backlog
waits behind them (from its ``KILL_AFTER_RECEIVED``-th push on, the receiver holds its answers until
the restart, so events acknowledged after that cannot all have been delivered, however fast the
pushes go), then started again on the same SQLite file; every notification it acknowledged is then
delivered.

Deliveries leased by the killed process are claimed again once their lease runs out (two timeouts
and a margin: about 12 s with ``timeout_seconds = 1``); events it stored but had not yet read
into deliveries are read after the restart, from the destination's cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.oracle import form_body
from tests.server.delivery_fixtures import SECRET, eventually
from tests.server.notifications import ALIPAY_CONTENT_TYPE, signed, trade_fields
from tests.server.receiver import Received, Receiver, receiving
from tests.server.subgate_process import SubgateProcess

CLIENTS = 4
KILL_AFTER_RECEIVED = 40
BACKLOG = 20  # notifications acknowledged while the receiver holds its answers, before the kill
CONTENT_TYPE = ALIPAY_CONTENT_TYPE.format(charset="UTF-8")


def destination_table(url: str) -> str:
    return f"""
[[destinations]]
name = "orders"
url = "{url}"
secret = "{SECRET}"
events = ["notification.received"]
timeout_seconds = 1
retry_initial_seconds = 0.2
retry_max_seconds = 1
poll_seconds = 0.2
"""


async def notify_until_stopped(
    server: SubgateProcess, http: aiohttp.ClientSession, acknowledged: set[str]
) -> None:
    """Post fresh notifications one after another; keep the ids answered ``success``."""
    while server.up.is_set():
        fields = signed(trade_fields(when=datetime.now(UTC)))
        data = form_body(fields)
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.post(
                server.url + "/alipay/notify", data=data, headers={"Content-Type": CONTENT_TYPE}
            ) as answer:
                if answer.status == 200 and await answer.read() == b"success":
                    acknowledged.add(fields["notify_id"])


async def test_every_acknowledged_notification_is_delivered_after_kill_9(tmp_path: Path) -> None:
    rng = random.Random(20261206)

    restarted = asyncio.Event()

    async def answer_after_a_moment(request: web.Request, got: Received) -> web.StreamResponse:
        if len(receiver.received) > KILL_AFTER_RECEIVED and not restarted.is_set():
            await restarted.wait()  # held: the killed process's pushes stay in flight
        else:
            await asyncio.sleep(rng.uniform(0.0, 0.02))  # pushes in flight when the kill lands
        return web.Response(status=200)

    async def backlog_built(since: int) -> bool:
        return len(acknowledged) >= since + BACKLOG

    acknowledged: set[str] = set()
    receiver: Receiver
    async with receiving() as receiver, aiohttp.ClientSession() as http:
        receiver.answer = answer_after_a_moment
        server = SubgateProcess(tmp_path, "http://127.0.0.1:9/gateway.do")  # no sends here
        with server.config.open("a") as config:
            config.write(destination_table(receiver.url))
        try:
            await server.start(http)
            clients = [
                asyncio.create_task(notify_until_stopped(server, http, acknowledged))
                for _ in range(CLIENTS)
            ]
            await receiver.wait_for(KILL_AFTER_RECEIVED + 1, seconds=30)
            since = len(acknowledged)
            await eventually(lambda: backlog_built(since), seconds=30)
            await server.kill()
            await asyncio.gather(*clients)
            before_restart = {r.payload["data"]["notify_id"] for r in receiver.received}
            restarted.set()
            await server.start(http)

            def delivered() -> set[str]:
                return {r.payload["data"]["notify_id"] for r in receiver.received}

            async def all_delivered() -> bool:
                return acknowledged <= delivered()

            await eventually(all_delivered, seconds=60)
        finally:
            await server.close()

    assert len(acknowledged) > KILL_AFTER_RECEIVED
    assert acknowledged - before_restart, "nothing was left to deliver after the kill"
    assert all(r.verify(SECRET) for r in receiver.received)
