"""Storage faults while notifications arrive: Subgate answers ``fail`` with 503
``storage_unavailable`` (so Alipay re-sends), acknowledges nothing it did not store, and
recovers by itself when the fault clears.

Faults, each on the live database of a running gateway:

- ``locked``: another connection holds ``BEGIN EXCLUSIVE`` past ``busy_timeout_ms`` (200 ms).
- ``read-only``: the writer's connection is switched to ``PRAGMA query_only``, so every write
  fails with SQLITE_READONLY, the error SQLite gives for a read-only file or volume. (chmod does
  not stop writes through an already-open descriptor, and the tests run as root, which chmod
  does not stop at all.)
- ``disk-full``: the writer's ``PRAGMA max_page_count`` is lowered to the file's current size,
  so a write that needs a page fails with SQLITE_FULL. (The pragma is per connection: set on a
  second connection it would not touch the writer.)

And one fault from outside the process, at the OS level: ``run.py serve`` in a subprocess whose
file-size limit (RLIMIT_FSIZE, set with ``prlimit``) is lowered to 0, so every write(2) to the
database files fails with EFBIG, then lifted.
"""

from __future__ import annotations

import asyncio
import resource
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest

from storage.sqlite.store import SQLiteStore
from tests.oracle import form_body
from tests.server.api_client import ONE_TIME, Api, ledger_rows, start_api, success_report
from tests.server.conftest import APP_ID, NOW, Gateway, StartGateway
from tests.server.notifications import (
    ALIPAY_CONTENT_TYPE,
    life_account_fields,
    post,
    signed,
    trade_fields,
)
from tests.server.subgate_process import TOKEN, SubgateProcess

FAIL = (503, "storage_unavailable", b"fail")
SUCCESS = (200, "", b"success")
USER_ID = "2088000000000001"


class Fault(Protocol):
    async def on(self) -> None: ...

    async def off(self) -> None: ...


class ExclusiveLock:
    """Another process's connection holding the database exclusively (a backup, a migration)."""

    def __init__(self, gateway: Gateway) -> None:
        self._blocker = sqlite3.connect(
            gateway.db_path, isolation_level=None, check_same_thread=False
        )

    async def on(self) -> None:
        await asyncio.to_thread(self._blocker.execute, "BEGIN EXCLUSIVE")

    async def off(self) -> None:
        await asyncio.to_thread(self._blocker.execute, "ROLLBACK")
        self._blocker.close()


class WriterPragma:
    """A pragma of the writer's own connection, set on the writer's one thread between batches
    (not inside one: with ``query_only`` on, even the batch's ``BEGIN IMMEDIATE`` fails)."""

    def __init__(self, gateway: Gateway, pragma: str, on: Callable[[sqlite3.Connection], int]):
        store = gateway.store
        assert isinstance(store, SQLiteStore)
        self._writer = store.writer
        self._pragma = pragma
        self._on = on
        self._saved: int | None = None

    async def _set(self, value: Callable[[sqlite3.Connection], int]) -> int:
        def change(connection: sqlite3.Connection) -> int:
            previous = int(connection.execute(f"PRAGMA {self._pragma}").fetchone()[0])
            connection.execute(f"PRAGMA {self._pragma} = {int(value(connection))}")
            return previous

        return await self._writer.maintain(change)

    async def on(self) -> None:
        self._saved = await self._set(self._on)

    async def off(self) -> None:
        saved = self._saved
        assert saved is not None
        await self._set(lambda _: saved)


def read_only(gateway: Gateway) -> Fault:
    return WriterPragma(gateway, "query_only", lambda _: 1)


def disk_full(gateway: Gateway) -> Fault:
    def current_size(connection: sqlite3.Connection) -> int:
        # A full disk leaves no room: the free pages a migration left inside the file (dropped
        # triggers, say) are given back first, so that a new row cannot fit in them either.
        connection.execute("VACUUM")
        return int(connection.execute("PRAGMA page_count").fetchone()[0])

    return WriterPragma(gateway, "max_page_count", current_size)


FAULTS: dict[str, Callable[[Gateway], Fault]] = {
    "locked": ExclusiveLock,
    "read-only": read_only,
    "disk-full": disk_full,
}
ALL_FAULTS = pytest.mark.parametrize("make_fault", list(FAULTS.values()), ids=list(FAULTS))


# Rows bigger than a page (4 KiB): storing one always needs new pages, so ``disk-full`` (a page
# limit) refuses it; a small row could still fit in the free space of a page the file has.
PADDING = "p" * 6000


def trade(when: datetime = NOW) -> dict[str, str]:
    return signed(trade_fields(when=when, passback_params=PADDING))


def stored_keys(gateway: Gateway) -> list[str]:
    """The dedupe keys in the database file itself (a separate, read-only connection)."""
    uri = f"{gateway.db_path.resolve().as_uri()}?mode=ro"
    connection = sqlite3.connect(uri, uri=True)
    try:
        return [str(row[0]) for row in connection.execute("SELECT dedupe_key FROM notifications")]
    finally:
        connection.close()


@ALL_FAULTS
async def test_a_notification_arriving_during_the_fault_is_answered_fail_503_and_not_stored(
    gateway: Gateway, make_fault: Callable[[Gateway], Fault]
) -> None:
    fields = trade()
    fault = make_fault(gateway)
    await fault.on()
    try:
        answer = await post(gateway.client, fields)
        stored = stored_keys(gateway)
    finally:
        await fault.off()

    assert answer == FAIL
    assert stored == []
    assert await gateway.stored_nothing()
    assert gateway.refusals() == {(APP_ID, "storage_unavailable"): 1}


@ALL_FAULTS
async def test_when_the_fault_clears_alipays_resend_is_stored_exactly_once(
    gateway: Gateway, make_fault: Callable[[Gateway], Fault]
) -> None:
    fields = trade()
    fault = make_fault(gateway)
    await fault.on()
    refused = await post(gateway.client, fields)
    await fault.off()

    resent = await post(gateway.client, fields)
    again = await post(gateway.client, fields)

    assert (refused, resent, again) == (FAIL, SUCCESS, SUCCESS)
    assert stored_keys(gateway) == [fields["notify_id"]]
    stored = await gateway.store.get_notification(APP_ID, fields["notify_id"])
    assert stored is not None and stored.fields == fields


@ALL_FAULTS
async def test_a_follow_refused_by_the_fault_records_no_event_and_its_resend_records_one(
    gateway: Gateway, make_fault: Callable[[Gateway], Fault]
) -> None:
    follow = {**life_account_fields("follow", USER_ID), "padding": PADDING}
    fields = signed(follow, rule="V2", charset="gbk")
    fault = make_fault(gateway)
    await fault.on()
    refused = await post(gateway.client, fields, charset="gbk", header_charset="GBK")
    events_during = await gateway.all_consent_events()
    await fault.off()

    resent = await post(gateway.client, fields, charset="gbk", header_charset="GBK")

    assert refused == FAIL and events_during == []
    assert resent[0] == 200
    assert [e.action for e in await gateway.all_consent_events()] == ["follow"]


class Stream:
    """Notifications posted concurrently; each answer is checked against the file at once."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.answers: dict[str, tuple[int, str, bytes]] = {}
        self.lies: list[str] = []
        self._answered = asyncio.Condition()

    async def post(self, fields: dict[str, str]) -> None:
        answer = await post(self.gateway.client, fields)
        present = fields["notify_id"] in stored_keys(self.gateway)
        if answer == SUCCESS and not present:
            self.lies.append(f"acknowledged but not stored: {fields['notify_id']}")
        if answer not in (SUCCESS, FAIL):
            self.lies.append(f"unexpected answer {answer}")
        async with self._answered:
            self.answers[fields["notify_id"]] = answer
            self._answered.notify_all()

    async def until_answered(self, count: int) -> None:
        async with self._answered:
            await asyncio.wait_for(
                self._answered.wait_for(lambda: len(self.answers) >= count), timeout=30
            )


@ALL_FAULTS
async def test_while_a_fault_comes_and_goes_only_stored_notifications_are_acknowledged(
    gateway: Gateway, make_fault: Callable[[Gateway], Fault]
) -> None:
    """Three senders post 30 notifications; the fault starts after 5 answers and ends after 15,
    with others in flight. Whatever each one got, `success` means stored. Every refused one is
    then re-sent (as Alipay does) and stored once."""
    pool = [trade() for _ in range(30)]
    stream = Stream(gateway)
    fault = make_fault(gateway)

    async def toggle() -> None:
        await stream.until_answered(5)
        await fault.on()
        await stream.until_answered(15)
        await fault.off()

    async def sender(share: list[dict[str, str]]) -> None:
        for fields in share:
            await stream.post(fields)

    await asyncio.gather(toggle(), *(sender(pool[n::3]) for n in range(3)))
    refused = [f for f in pool if stream.answers[f["notify_id"]] != SUCCESS]
    await asyncio.gather(*(stream.post(fields) for fields in refused))

    assert stream.lies == []
    assert 0 < len(refused) < len(pool), "the fault must start and end while notifications arrive"
    assert {answer for answer in stream.answers.values()} == {SUCCESS}
    assert sorted(stored_keys(gateway)) == sorted(f["notify_id"] for f in pool)


@pytest.fixture
async def api(start_gateway: StartGateway, tmp_path: Path) -> Api:
    return await start_api(start_gateway, tmp_path)


@ALL_FAULTS
async def test_a_subscribe_report_during_the_fault_is_a_json_503_and_is_applied_once_after(
    api: Api, make_fault: Callable[[Gateway], Fault]
) -> None:
    report = {**success_report(ONE_TIME), "trace": PADDING}
    fault = make_fault(api.gateway)
    await fault.on()
    refused = await api.report(report, key="report-during-fault")
    rows_during = ledger_rows(api.gateway)
    await fault.off()

    applied = await api.report(report, key="report-during-fault")

    assert (refused.status, refused.code) == (503, "storage_unavailable")
    assert refused.body["error"]["message"].startswith("store unavailable: SQLITE_")
    assert all(rows == [] for rows in rows_during.values())
    assert applied.status == 200 and applied.body["applied"] is True
    assert len(ledger_rows(api.gateway)["subscribe_reports"]) == 1
    assert (await api.subscription_of(ONE_TIME))["credits"] == 1


# -- an OS-level fault on a real process ---------------------------------------------------------


@pytest.fixture
async def process(tmp_path: Path) -> AsyncIterator[tuple[SubgateProcess, aiohttp.ClientSession]]:
    server = SubgateProcess(tmp_path, "http://127.0.0.1:9/gateway.do")  # no sends here
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        await server.start(http)
        try:
            yield server, http
        finally:
            await server.close()


async def post_to(
    server: SubgateProcess, http: aiohttp.ClientSession, fields: dict[str, str]
) -> tuple[int, str, bytes]:
    headers = {"Content-Type": ALIPAY_CONTENT_TYPE.format(charset="UTF-8")}
    async with http.post(
        f"{server.url}/alipay/notify", data=form_body(fields), headers=headers
    ) as r:
        return r.status, r.headers.get("X-Subgate-Error", ""), await r.read()


def file_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [tuple(row) for row in connection.execute(sql)]
    finally:
        connection.close()


def file_keys(db: Path) -> list[str]:
    return [str(key) for (key,) in file_rows(db, "SELECT dedupe_key FROM notifications")]


async def test_a_process_that_may_not_write_files_answers_503_and_recovers_when_allowed_again(
    process: tuple[SubgateProcess, aiohttp.ClientSession],
) -> None:
    """RLIMIT_FSIZE 0 on the live process: every write(2) fails with EFBIG, as on a full disk."""
    server, http = process
    before, during, after = (trade(datetime.now(UTC)) for _ in range(3))
    assert await post_to(server, http, before) == SUCCESS
    soft, hard = resource.prlimit(server.pid, resource.RLIMIT_FSIZE)

    resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (0, hard))
    try:
        refused = await asyncio.gather(*(post_to(server, http, during) for _ in range(3)))
        keys_during = file_keys(server.db)
    finally:
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (soft, hard))
    resent = await post_to(server, http, during)
    fresh = await post_to(server, http, after)

    assert refused == [FAIL] * 3
    assert keys_during == [before["notify_id"]]
    assert (resent, fresh) == (SUCCESS, SUCCESS)
    assert sorted(file_keys(server.db)) == sorted(f["notify_id"] for f in (before, during, after))
    assert await server.stop() == 0


async def test_a_report_to_a_process_that_may_not_write_files_is_a_503_and_applies_once_after(
    process: tuple[SubgateProcess, aiohttp.ClientSession],
) -> None:
    server, http = process
    path = f"{server.url}/v1/apps/{APP_ID}/users/{USER_ID}/subscribe-results"
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "report-efbig"}
    report = {**success_report(ONE_TIME), "trace": PADDING}

    async def send() -> tuple[int, Any]:
        async with http.post(path, json=report, headers=headers) as answer:
            return answer.status, await answer.json()

    soft, hard = resource.prlimit(server.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (0, hard))
    try:
        refused = await send()
    finally:
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (soft, hard))
    applied, replayed = await send(), await send()

    assert (refused[0], refused[1]["error"]["code"]) == (503, "storage_unavailable")
    assert (applied[0], applied[1]["applied"]) == (200, True)
    assert replayed == applied
    assert file_rows(server.db, "SELECT count(*) FROM subscribe_reports") == [(1,)]
    assert file_rows(server.db, "SELECT action FROM consent_events") == [("accept",)]
