"""``python run.py listen``: a real process following a live Subgate's feed, forwarding each event
to a local receiver that verifies it with the ``standardwebhooks`` package (the reference
implementation, never Subgate's own signing code)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook

from tests.server.api_client import (
    LONG_TERM,
    ONE_TIME,
    OTHER_APP_TOKEN,
    READER_TOKEN,
    Api,
    start_api,
    success_report,
)
from tests.server.conftest import APP_ID, StartGateway
from tests.server.notifications import post, signed, trade_fields
from tests.server.subgate_process import free_port

ROOT = Path(__file__).resolve().parents[2]
LINE_TIMEOUT = 20.0
SECRET = re.compile(r"secret is (whsec_[A-Za-z0-9+/=]+)")


@dataclass
class Receiver:
    """The developer's local service: verifies each post, answers 500 to the orders it is told
    to fail (as many times as it is told), 204 to the rest."""

    secret: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # out_trade_no -> failures left
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        order = json.loads(body)["data"].get("fields", {}).get("out_trade_no")
        if self.failures.get(order, 0) > 0:
            self.failures[order] -= 1
            return web.Response(status=500, text="not today")
        payload = Webhook(self.secret).verify(body, headers)  # raises unless signed right
        self.received.append(payload)
        self.headers.append(headers)
        self.arrived.set()
        return web.Response(status=204)

    async def until_received(self, count: int) -> None:
        async with asyncio.timeout(LINE_TIMEOUT):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    receiving = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiving.hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield receiving, str(server.make_url("/hook"))
    await server.close()


@pytest.fixture
async def api(start_gateway: StartGateway, tmp_path: Path) -> Api:
    return await start_api(start_gateway, tmp_path)


class Listen:
    """``run.py listen`` as a child process, its output read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def line(self, pattern: str) -> str:
        """The next line of output that contains ``pattern`` (bounded)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(LINE_TIMEOUT):
            while True:
                raw = await self.process.stdout.readline()
                assert raw, f"listen ended before printing {pattern!r}: {self.lines}"
                self.lines.append(raw.decode().rstrip("\n"))
                if pattern in self.lines[-1]:
                    return self.lines[-1]

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
        return await asyncio.wait_for(self.process.wait(), LINE_TIMEOUT)


async def run_listen(
    *arguments: str, token: str | None = READER_TOKEN, cwd: Path
) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "SUBGATE_TOKEN"}
    if token is not None:
        env["SUBGATE_TOKEN"] = token
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "run.py"),
        "listen",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )


@pytest.fixture
async def listening(
    api: Api, receiver: tuple[Receiver, str], tmp_path: Path
) -> AsyncIterator[Listen]:
    """``listen`` following APP_ID (after one event already written), retrying twice."""
    await notify(api, out_trade_no="written-before-listen")
    url = str(api.gateway.client.make_url("")).rstrip("/")
    process = await run_listen(
        "--forward-to", receiver[1], "--url", url, "--app", APP_ID, "--retries", "2", cwd=tmp_path
    )
    listen = Listen(process)
    receiver[0].secret = SECRET.search(await listen.line("secret is"))[1]  # type: ignore[index]
    await listen.line("Forwarding events")
    yield listen
    if process.returncode is None:
        process.kill()
        await process.wait()


async def notify(api: Api, *, out_trade_no: str) -> dict[str, str]:
    notification = signed(trade_fields(out_trade_no=out_trade_no))
    status, code, _ = await post(api.gateway.client, notification)
    assert status == 200, code
    return notification


async def test_each_new_event_is_posted_signed_in_order_and_printed_with_the_answer(
    api: Api, listening: Listen, receiver: tuple[Receiver, str]
) -> None:
    received = receiver[0]
    notification = await notify(api, out_trade_no="order-7")
    assert (await api.report(success_report(ONE_TIME, LONG_TERM))).status == 200

    await received.until_received(3)

    feed = await api.request("GET", f"/v1/apps/{APP_ID}/events", params={"limit": "500"})
    expected = feed.body["events"][1:]  # the first was written before listen started
    assert [h["webhook-id"] for h in received.headers] == [e["id"] for e in expected]
    assert received.received == [{k: e[k] for k in ("type", "timestamp", "data")} for e in expected]
    assert received.received[0]["data"]["notify_id"] == notification["notify_id"]
    assert {p["data"]["template_id"] for p in received.received[1:]} == {LONG_TERM, ONE_TIME}
    printed = [await listening.line(f"{e['id']}  ") for e in expected]
    assert all(line.endswith(" ms)") and "-> 204 (" in line for line in printed)
    assert await listening.stop() == 0


async def test_a_failed_local_post_is_retried_then_given_up_and_the_next_event_goes_on(
    api: Api, listening: Listen, receiver: tuple[Receiver, str]
) -> None:
    received = receiver[0]
    received.failures = {"flaky": 2, "broken": 3}  # flaky: two failures, then delivered
    for order in ("flaky", "broken", "fine"):
        await notify(api, out_trade_no=order)
    feed = await api.request("GET", f"/v1/apps/{APP_ID}/events", params={"limit": "500"})
    flaky, broken, fine = (e["id"] for e in feed.body["events"][1:])

    await received.until_received(2)

    assert [h["webhook-id"] for h in received.headers] == [flaky, fine]
    tried = [(await listening.line(f"{flaky}  ")).split(" -> ")[1] for _ in range(3)]
    assert [answer.split(" (")[0] for answer in tried] == ["500", "500", "204"]
    assert tried[0].endswith("ms), retrying (1/2)") and tried[1].endswith("ms), retrying (2/2)")
    gave_up = await listening.line("gave up")
    assert f"{broken}  " in gave_up and " -> 500 (" in gave_up
    assert gave_up.endswith("ms), gave up after 3 attempts; going on")
    assert "-> 204 (" in await listening.line(f"{fine}  ")


async def test_without_a_reachable_subgate_it_exits_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    process = await run_listen(
        "--forward-to", "http://127.0.0.1:1/hook", "--url", url, cwd=tmp_path
    )

    stdout, stderr = await asyncio.wait_for(process.communicate(), LINE_TIMEOUT)

    assert process.returncode == 1
    assert stderr.decode().splitlines() == [stderr.decode().strip()]
    assert f"cannot reach Subgate at {url}" in stderr.decode()
    assert "Traceback" not in stderr.decode() and stdout == b""


@pytest.mark.parametrize(
    ("token", "status"), [("not-a-token-0123456789", "401 unauthorized"), (OTHER_APP_TOKEN, "403")]
)
async def test_a_refused_token_ends_it_with_one_line(
    api: Api, tmp_path: Path, token: str, status: str
) -> None:
    url = str(api.gateway.client.make_url("")).rstrip("/")
    process = await run_listen(
        "--forward-to", "http://127.0.0.1:1/hook", "--url", url, token=token, cwd=tmp_path
    )

    _, stderr = await asyncio.wait_for(process.communicate(), LINE_TIMEOUT)

    assert process.returncode == 1
    [line] = stderr.decode().splitlines()
    assert line.startswith(f"subgate listen: Subgate refused the token ({status}")
    assert token not in line


async def test_without_any_token_it_says_where_to_put_one(tmp_path: Path) -> None:
    process = await run_listen("--forward-to", "http://127.0.0.1:1/hook", token=None, cwd=tmp_path)

    _, stderr = await asyncio.wait_for(process.communicate(), LINE_TIMEOUT)

    assert process.returncode == 2
    assert (
        stderr.decode().strip()
        == "subgate listen: no API token: pass --token or set $SUBGATE_TOKEN"
    )


async def test_help_names_every_option(tmp_path: Path) -> None:
    process = await run_listen("--help", cwd=tmp_path)

    stdout, _ = await asyncio.wait_for(process.communicate(), LINE_TIMEOUT)

    assert process.returncode == 0
    for option in ("--forward-to", "--app", "--url", "--token", "--types", "--from-start"):
        assert option in stdout.decode()


def test_the_printed_secret_is_a_standard_webhooks_secret() -> None:
    from server.cli.listen import new_secret

    secret = new_secret()

    Webhook(secret)  # the reference library takes it
    assert secret.startswith("whsec_") and secret != new_secret()
    assert json.dumps(secret).strip('"') == secret
