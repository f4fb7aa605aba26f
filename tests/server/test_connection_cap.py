"""The connection cap (issue 25, item 2): below the open-file limit, past it 503 ``over_capacity``
at once, and the connections already open still answered.

In process with ``max_connections`` set low; then ``run.py serve`` as a real process whose
open-file limit is lowered (soft 256, hard 512) so that the cap is the one derived from the limit.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from server.runtime.open_files import connection_cap, reserved_descriptors
from server.settings import SettingsError, load_settings
from tests.oracle import form_body
from tests.server.api_client import api_settings
from tests.server.conftest import NOW
from tests.server.guarded import (
    close,
    connect,
    dribbled,
    parse_answer,
    read_to_end,
    serve_guarded,
    until,
)
from tests.server.notifications import ALIPAY_CONTENT_TYPE, signed, trade_fields
from tests.server.subgate_process import SubgateProcess, free_port
from tests.server.test_intake_workers import children_of
from tests.server.test_intake_workers import until as until_scraped

CAP = 4
NOTIFY_HEADERS = {"Content-Type": ALIPAY_CONTENT_TYPE.format(charset="UTF-8")}


def notification(when: datetime = NOW) -> bytes:
    return form_body(signed(trade_fields(when=when)), "utf-8")


def live_notification() -> bytes:
    """For a real process, which checks the time against the wall clock."""
    return notification(datetime.now(UTC))


def assert_over_capacity(raw: bytes) -> None:
    answer = parse_answer(raw)
    assert answer.status == 503
    assert answer.headers["x-subgate-error"] == "over_capacity"
    assert json.loads(answer.body)["error"]["code"] == "over_capacity"


def test_the_cap_is_the_file_limit_less_a_reserve_and_refuses_more(tmp_path: Path) -> None:
    settings = api_settings(tmp_path)
    reserve = reserved_descriptors(settings)

    assert reserve == 318  # the figure docs/settings.md gives for the defaults
    assert connection_cap(settings, 1024) == 1024 - reserve
    assert connection_cap(settings, 256) == 64  # a quarter of a small limit
    assert connection_cap(api_settings(tmp_path, max_connections=100), 1024) == 100
    with pytest.raises(SettingsError, match="max_connections = 1000 leaves too few"):
        connection_cap(api_settings(tmp_path, max_connections=1000), 1024)


async def test_past_the_cap_a_connection_is_answered_503_and_those_open_are_served(
    tmp_path: Path,
) -> None:
    async with (
        serve_guarded(api_settings(tmp_path, max_connections=CAP)) as served,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as genuine,
    ):
        async with genuine.get(f"{served.url}/healthz") as answer:  # its connection stays open
            assert answer.status == 200
        held = [await connect(served.port) for _ in range(CAP - 1)]
        await until(lambda: served.site.guards.open_connections == CAP, "the cap is reached")

        turned_away = await asyncio.gather(*(over_cap(served.port) for _ in range(20)))
        async with genuine.post(
            f"{served.url}/alipay/notify", data=notification(), headers=NOTIFY_HEADERS
        ) as answer:
            assert (answer.status, await answer.text()) == (200, "success")

        for raw in turned_away:
            assert_over_capacity(raw)
        assert served.error_answers("over_capacity") == 20
        for _, writer in held:
            await close(writer)
        await until(lambda: served.site.guards.open_connections == 1, "the held ones are closed")
        async with aiohttp.ClientSession() as fresh, fresh.get(f"{served.url}/healthz") as answer:
            assert answer.status == 200


async def over_cap(port: int) -> bytes:
    """A client that sends its request at once, as Alipay does, and reads the answer."""
    reader, writer = await connect(port)
    writer.write(b"POST /alipay/notify HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    writer.write(b"a" * 5000)
    raw = await read_to_end(reader)
    await close(writer)
    return raw


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


def open_file_limits(pid: int) -> tuple[int, int]:
    line = next(
        line
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
        if line.startswith("Max open files")
    )
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


SOFT, HARD = 256, 512
HOSTILE = 600  # more than the hard limit: without a cap, accept would run out of descriptors
BATCH = 50  # connections opened at once, below the listen backlog
TIMEOUT = 0.5
EARLY = 0.05  # uvloop times with libuv's clock: milliseconds, read once per loop turn
WORKERS = f"""refusal_flush_seconds = 0.5
read_timeout_seconds = {TIMEOUT}
keepalive_timeout_seconds = 60
intake_workers = 1
intake_port = {{port}}"""


async def hold(port: int) -> asyncio.StreamWriter:
    """A connection that sends the start of a request and then neither sends nor reads."""
    _, writer = await connect(port)
    writer.write(b"POST /alipay/notify HTTP/1.1\r\n")
    return writer


async def scrape(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/metrics") as answer:
        return await answer.text()


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[SubgateProcess]:
    """``run.py serve`` started with its open-file limit at (256, 512)."""
    subgate = SubgateProcess(tmp_path, "http://127.0.0.1:9/gateway.do", open_files=(SOFT, HARD))
    async with aiohttp.ClientSession() as http:
        await subgate.start(http)
    yield subgate
    await subgate.close()


async def test_a_flood_past_the_file_limit_leaves_genuine_notifications_answered(
    limited: SubgateProcess,
) -> None:
    cap = connection_cap(load_settings(limited.config), HARD)
    genuine = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    hostile: list[asyncio.StreamWriter] = []
    try:
        metrics = await scrape(genuine, limited.url)  # opens the genuine connection, kept alive
        assert open_file_limits(limited.pid) == (HARD, HARD)  # raised to the hard limit
        assert metric(metrics, "subgate_max_connections") == cap < HARD
        for _ in range(HOSTILE // BATCH):
            hostile += await asyncio.gather(*(hold(limited.port) for _ in range(BATCH)))
        async with genuine.post(
            f"{limited.url}/alipay/notify", data=live_notification(), headers=NOTIFY_HEADERS
        ) as answer:
            assert (answer.status, await answer.text()) == (200, "success")
        metrics = await scrape(genuine, limited.url)
    finally:
        for writer in hostile:
            await close(writer)
        await genuine.close()

    assert metric(metrics, "subgate_open_connections") == cap
    turned_away = 'subgate_error_answers_total{code="over_capacity"}'
    assert metric(metrics, re.escape(turned_away)) == HOSTILE - (cap - 1)
    log = limited.log.read_text(errors="replace")
    assert "Too many open files" not in log
    assert "Traceback" not in log
    assert "turned away" in log
    async with (  # once they are gone, a new connection is served
        aiohttp.ClientSession() as fresh,
        fresh.post(
            f"{limited.url}/alipay/notify", data=live_notification(), headers=NOTIFY_HEADERS
        ) as answer,
    ):
        assert (answer.status, await answer.text()) == (200, "success")


async def test_worker_processes_raise_their_file_limit_and_intake_is_guarded(
    tmp_path: Path,
) -> None:
    """One intake worker and one call worker: every process starts with the hard limit as its
    soft one, and the intake port cuts off dribbled headers as the primary's port does; the
    primary's /metrics counts the worker's cut-off."""
    subgate = SubgateProcess(tmp_path, "http://127.0.0.1:9/gateway.do", open_files=(SOFT, HARD))
    intake_port = free_port()
    config = subgate.config.read_text()
    config = config.replace("refusal_flush_seconds = 0.5", WORKERS.format(port=intake_port))
    subgate.config.write_text(config.replace("[outbox]", "[outbox]\ncall_processes = 1"))
    async with aiohttp.ClientSession() as http:
        await subgate.start(http)
        try:
            limits = [open_file_limits(pid) for pid in [subgate.pid, *children_of(subgate.pid)]]
            raw, elapsed = await dribbled(intake_port, b"POST /alipay/notify HTTP/1.1\r\nX: ")

            async def counted() -> bool:
                return 'subgate_read_timeouts_total{phase="headers"} 1.0' in await scrape(
                    http, subgate.url
                )

            await until_scraped(counted, "the worker's cut-off is relayed to the primary")
        finally:
            await subgate.close()

    assert limits == [(HARD, HARD)] * 3  # the primary, its intake worker, its call worker
    assert raw == b""
    assert TIMEOUT - EARLY <= elapsed < TIMEOUT + 1.0
