"""Slow clients (issue 25, item 2): headers and body each get ``read_timeout_seconds``, idle
connections ``keepalive_timeout_seconds``; then the connection is cut off, counted, and a body
cut off while its handler reads it is answered 408 ``request_timeout``.

The dribbling clients send one byte every 50 ms, so they are never idle: only a deadline stops
them (aiohttp's keep-alive timeout, set far above the read timeout here, would not).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop

from server.appkeys import STORE
from server.intake.keys import REFUSALS
from server.ops.client_cutoffs import READ_TIMEOUT
from server.settings import Settings
from tests.oracle import form_body
from tests.server.api_client import ADMIN_TOKEN, api_settings
from tests.server.conftest import APP_ID
from tests.server.guarded import (
    close,
    connect,
    dribble,
    dribbled,
    parse_answer,
    read_to_end,
    request_head,
    serve_guarded,
)
from tests.server.notifications import ALIPAY_CONTENT_TYPE, signed, trade_fields
from tests.server.send_fixtures import USER

TIMEOUT = 0.5
SLACK = 1.0  # scheduling allowance above a deadline
EARLY = 0.05  # uvloop times with libuv's clock: milliseconds, read once per loop turn
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
REPORT = f"/v1/apps/{APP_ID}/users/{USER}/subscribe-results"
API = {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"}


def slow_settings(tmp_path: Path, **server: Any) -> Settings:
    options = {"read_timeout_seconds": TIMEOUT, "keepalive_timeout_seconds": 60.0, **server}
    return api_settings(tmp_path, **options)


def body_head(path: str, headers: dict[str, str]) -> bytes:
    return request_head("POST", path, {**headers, "Content-Length": "10000"})


async def test_dribbled_headers_are_cut_off_at_the_read_timeout(tmp_path: Path) -> None:
    async with serve_guarded(slow_settings(tmp_path)) as served:
        raw, elapsed = await dribbled(served.port, b"POST /alipay/notify HTTP/1.1\r\nX-Slow: ")

        assert raw == b""  # no request to answer: closed
        assert TIMEOUT - EARLY <= elapsed < TIMEOUT + SLACK
        assert served.cutoffs(READ_TIMEOUT, "headers") == 1
        assert served.error_answers("request_timeout") == 0


@pytest.mark.parametrize(
    ("path", "headers"), [("/alipay/notify", FORM), (f"/alipay/notify/{APP_ID}", FORM)]
)
async def test_a_dribbled_notification_body_is_answered_408_fail(
    tmp_path: Path, path: str, headers: dict[str, str]
) -> None:
    async with serve_guarded(slow_settings(tmp_path)) as served:
        raw, elapsed = await dribbled(served.port, body_head(path, headers))
        answer = parse_answer(raw)

        assert (answer.status, answer.body) == (408, b"fail")
        assert answer.headers["x-subgate-error"] == "request_timeout"
        assert answer.headers["connection"] == "close"
        assert TIMEOUT - EARLY <= elapsed < TIMEOUT + SLACK
        assert served.cutoffs(READ_TIMEOUT, "body") == 1
        assert served.error_answers("request_timeout") == 1
        app_key = "-" if path == "/alipay/notify" else APP_ID
        assert served.app[REFUSALS].totals() == {(app_key, "request_timeout"): 1}
        assert await served.app[STORE].count_notifications() == 0


async def test_a_dribbled_api_body_is_answered_408_in_the_error_envelope(tmp_path: Path) -> None:
    headers = {**API, "Idempotency-Key": "slow-0001"}
    async with serve_guarded(slow_settings(tmp_path)) as served:
        raw, elapsed = await dribbled(served.port, body_head(REPORT, headers))
        answer = parse_answer(raw)

        assert answer.status == 408
        assert json.loads(answer.body)["error"]["code"] == "request_timeout"
        assert TIMEOUT - EARLY <= elapsed < TIMEOUT + SLACK
        assert served.cutoffs(READ_TIMEOUT, "body") == 1


async def test_a_body_nobody_reads_holds_the_connection_no_longer_than_the_timeout(
    tmp_path: Path,
) -> None:
    """Refused before its body is read (no token: 401), the rest of a dribbled body would be
    read and dropped for aiohttp's 10 s lingering time; the read timeout closes it first."""
    async with serve_guarded(slow_settings(tmp_path)) as served:
        headers = {"Content-Type": "application/json", "Idempotency-Key": "slow-0002"}
        raw, elapsed = await dribbled(served.port, body_head(REPORT, headers))

        assert parse_answer(raw).status == 401
        assert TIMEOUT - EARLY <= elapsed < TIMEOUT + SLACK
        assert served.cutoffs(READ_TIMEOUT, "body") == 1
        assert served.error_answers("request_timeout") == 0  # it had its answer


async def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(
    tmp_path: Path,
) -> None:
    async with serve_guarded(slow_settings(tmp_path, keepalive_timeout_seconds=TIMEOUT)) as served:
        reader, writer = await connect(served.port)
        writer.write(request_head("GET", "/healthz", {}))
        answered = time.monotonic()
        raw = await read_to_end(reader)
        idle = time.monotonic() - answered
        await close(writer)

        assert parse_answer(raw).status == 200
        assert TIMEOUT - EARLY <= idle < TIMEOUT + SLACK
        assert served.metrics.clients.totals() == {}  # idle is not slow


async def test_genuine_requests_pass_the_guard_kept_alive_and_pipelined(tmp_path: Path) -> None:
    fields = signed(trade_fields())
    body = form_body(fields, "utf-8")
    notify = {"Content-Type": ALIPAY_CONTENT_TYPE.format(charset="UTF-8")}
    async with serve_guarded(slow_settings(tmp_path)) as served:
        async with aiohttp.ClientSession() as http:
            for _ in range(3):  # one kept-alive connection: the second and third are duplicates
                async with http.post(f"{served.url}/alipay/notify", data=body, headers=notify) as r:
                    assert (r.status, await r.text()) == (200, "success")
        reader, writer = await connect(served.port)
        head = request_head("POST", "/alipay/notify", {**notify, "Content-Length": str(len(body))})
        writer.write((head + body) * 2 + request_head("GET", "/healthz", {"Connection": "close"}))
        raw = await read_to_end(reader)
        await close(writer)

        assert raw.count(b"HTTP/1.1 200 OK") == 3
        assert served.metrics.clients.totals() == {}


async def test_a_busy_kept_alive_connection_still_holds_each_request_to_its_deadline(
    tmp_path: Path,
) -> None:
    """Requests move the connection's deadline without a timer each; the timer that comes due
    meanwhile sets itself again, and a later dribbled body is still cut off on time."""
    async with serve_guarded(slow_settings(tmp_path)) as served:
        reader, writer = await connect(served.port)
        started = time.monotonic()
        while time.monotonic() - started < 3 * TIMEOUT:  # past the first requests' deadlines
            writer.write(request_head("GET", "/healthz", {}))
            await reader.readuntil(b'{"status": "ok"}')
        dribbling = time.monotonic()
        writer.write(body_head("/alipay/notify", FORM))
        answer = asyncio.ensure_future(read_to_end(reader))
        await dribble(writer, answer)
        elapsed = time.monotonic() - dribbling
        await close(writer)

        assert parse_answer(await answer).status == 408
        assert TIMEOUT - EARLY <= elapsed < TIMEOUT + SLACK
        assert served.metrics.clients.totals() == {(READ_TIMEOUT, "body"): 1}


@pytest.mark.parametrize(
    "scenario",
    [
        test_dribbled_headers_are_cut_off_at_the_read_timeout,
        test_a_dribbled_api_body_is_answered_408_in_the_error_envelope,
        test_a_body_nobody_reads_holds_the_connection_no_longer_than_the_timeout,
    ],
)
def test_the_same_on_uvloop(
    tmp_path: Path, scenario: Callable[[Path], Coroutine[Any, Any, None]]
) -> None:
    """``run.py serve`` runs on uvloop, whose transports are not asyncio's."""
    uvloop.run(scenario(tmp_path))
