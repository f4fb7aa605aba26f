"""Clients that hang up before their request is read (issue 25, item 1): not an error of ours.

Each hostile client sends a request's headers with ``Content-Length: 100``, one byte of the body,
and closes. Before the fix every one was an ``internal_error`` with an ERROR traceback; now each
is counted in ``subgate_client_disconnects_total{route}`` and the log gets at most one line per
route every ``LOG_INTERVAL_SECONDS``, without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest

from server.ops.client_cutoffs import DISCONNECT
from tests.server.api_client import ADMIN_TOKEN, api_settings
from tests.server.conftest import APP_ID
from tests.server.guarded import close, connect, request_head, serve_guarded, until
from tests.server.send_fixtures import USER

FLOOD = 300
AT_ONCE = 50  # below the listen backlog: the flood measures hang-ups, not SYN retries
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
REPORT = "/v1/apps/{app_id}/users/{user_id}/subscribe-results"
API = {
    "Content-Type": "application/json",
    "Authorization": f"Bearer {ADMIN_TOKEN}",
    "Idempotency-Key": "hang-up-0001",
}
ROUTES = [
    pytest.param("/alipay/notify", "/alipay/notify", FORM, id="notify"),
    pytest.param(f"/alipay/notify/{APP_ID}", "/alipay/notify/{app_id}", FORM, id="notify-app"),
    pytest.param(REPORT.format(app_id=APP_ID, user_id=USER), REPORT, API, id="v1-report"),
]


async def hang_up(port: int, path: str, headers: dict[str, str]) -> None:
    """Headers promising 100 bytes, one byte of body, then close."""
    _, writer = await connect(port)
    writer.write(request_head("POST", path, {**headers, "Content-Length": "100"}) + b"a")
    await writer.drain()
    await close(writer)


async def flood(port: int, path: str, headers: dict[str, str]) -> None:
    for _ in range(FLOOD // AT_ONCE):
        await asyncio.gather(*(hang_up(port, path, headers) for _ in range(AT_ONCE)))


@pytest.mark.parametrize(("path", "route", "headers"), ROUTES)
async def test_a_hang_up_flood_is_counted_apart_never_an_internal_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str, route: str, headers: dict[str, str]
) -> None:
    caplog.set_level(logging.INFO)
    async with serve_guarded(api_settings(tmp_path)) as served:
        await flood(served.port, path, headers)
        await until(lambda: served.cutoffs(DISCONNECT, route) == FLOOD, "every hang-up counts")
        await until(lambda: served.site.guards.open_connections == 0, "every connection closed")
        exposition = generate_latest(served.metrics.registry).decode()

        assert served.error_answers("internal_error") == 0
    assert f'subgate_client_disconnects_total{{route="{route}"}} {FLOOD}.0' in exposition
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info is not None] == []
    lines = [r.getMessage() for r in caplog.records if r.name == "server.ops.client_cutoffs"]
    assert len(lines) == 1, lines  # the first; the next is due LOG_INTERVAL_SECONDS later
    assert route in lines[0]


async def test_a_client_leaving_a_route_that_reads_no_body_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``/v1`` without a token is refused before the body is read: 401, nothing else counted."""
    caplog.set_level(logging.INFO)
    headers = {"Content-Type": "application/json", "Idempotency-Key": "hang-up-0002"}
    async with serve_guarded(api_settings(tmp_path)) as served:
        await flood(served.port, REPORT.format(app_id=APP_ID, user_id=USER), headers)
        await until(lambda: served.error_answers("unauthorized") == FLOOD, "every 401 is made")
        await until(lambda: served.site.guards.open_connections == 0, "every connection closed")

        assert served.error_answers("internal_error") == 0
        assert served.metrics.clients.totals() == {}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
