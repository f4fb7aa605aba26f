"""``[server] intake_workers``: worker processes verify on the intake port, the primary stores.

Every test runs the real thing: the primary is Subgate on a real port, its workers are real
``python -m server.workers.intake_process`` processes sharing ``intake_port`` with SO_REUSEPORT, and
notifications are signed by the official SDK. Workers verify against the wall clock (they are
other processes), so what is posted to them is dated now.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.intake.gateway import StoreSink
from server.intake.keys import STORE_SINK
from server.intake.refusals import RefusalCounter
from server.ops.metrics import Metrics
from server.settings import Settings, SettingsError, StorageSettings
from server.workers.intake_pool import INTAKE_WORKERS, IntakeWorkers
from server.workers.supervision import WorkerStartFailed
from storage import open_store
from storage.models import ConsentAction
from tests.oracle import form_body
from tests.server.conftest import APP_ID, Clock, Gateway, StartGateway, make_settings
from tests.server.notifications import (
    ALIPAY_CONTENT_TYPE,
    life_account_fields,
    signed,
    stranger_key,
    trade_fields,
)
from tests.server.subgate_process import ROOT, SubgateProcess, alive, free_port
from tests.storage.postgres_env import fresh_schema, server_url

USER_ID = "2088000000000001"
DEADLINE_SECONDS = 30.0


def worker_settings(tmp_path: Path, workers: int = 2) -> Settings:
    return make_settings(
        tmp_path, intake_workers=workers, intake_port=free_port(), refusal_flush_seconds=0.05
    )


class Intake:
    """Posts to the workers' port, as Alipay would."""

    def __init__(self, gateway: Gateway, session: aiohttp.ClientSession) -> None:
        self.gateway = gateway
        self.url = f"http://127.0.0.1:{gateway.settings.server.intake_port}/alipay/notify"
        self._session = session

    @property
    def workers(self) -> IntakeWorkers:
        return self.gateway.app[INTAKE_WORKERS]

    async def post(self, fields: dict[str, str], charset: str = "utf-8") -> tuple[int, str, bytes]:
        # A new connection each time, so the kernel spreads them over the workers.
        headers = {
            "Content-Type": ALIPAY_CONTENT_TYPE.format(charset=charset),
            "Connection": "close",
        }
        async with self._session.post(
            self.url, data=form_body(fields, charset), headers=headers
        ) as response:
            return (
                response.status,
                response.headers.get("X-Subgate-Error", ""),
                await response.read(),
            )

    async def metrics(self) -> str:
        async with self._session.get(self.gateway.client.make_url("/metrics")) as response:
            return await response.text()


@pytest.fixture
async def intake(start_gateway: StartGateway, tmp_path: Path) -> Any:
    gateway = await start_gateway(worker_settings(tmp_path), wall_clock())
    async with aiohttp.ClientSession() as session:
        yield Intake(gateway, session)


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll a condition that another process makes true (bounded; never a fixed sleep)."""
    end = time.monotonic() + DEADLINE_SECONDS
    while not await condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


def wall_clock() -> Clock:
    """The primary's clock agreeing with the workers' (it dates the refusal counts it flushes)."""
    return Clock(datetime.now(UTC))


def now_trade(**extra: str) -> dict[str, str]:
    return signed(trade_fields(when=datetime.now(UTC), **extra))


async def test_the_primary_starts_each_worker_as_a_process_of_its_own(intake: Intake) -> None:
    pids = intake.workers.pids

    assert len(pids) == 2 and len(set(pids)) == 2
    assert all(alive(pid) and pid != os.getpid() for pid in pids)


async def test_readyz_counts_the_serving_workers_and_is_unready_with_none(intake: Intake) -> None:
    async with intake.gateway.client.get("/readyz") as response:
        serving = (response.status, (await response.json())["checks"]["intake_workers"])

    await intake.workers.stop()
    async with intake.gateway.client.get("/readyz") as response:
        stopped = (response.status, (await response.json())["checks"]["intake_workers"])

    assert serving == (200, 2)
    assert stopped == (503, 0)


async def test_each_notification_posted_to_the_workers_is_stored_once_whatever_the_retries(
    intake: Intake,
) -> None:
    notifications = [now_trade() for _ in range(30)]

    answers = await asyncio.gather(*(intake.post(n) for n in notifications * 3))

    assert answers == [(200, "", b"success")] * 90
    assert await intake.gateway.store.count_notifications(APP_ID) == 30
    for fields in notifications:
        stored = await intake.gateway.store.get_notification(APP_ID, fields["notify_id"])
        assert stored is not None and stored.fields == fields
    metrics = await intake.metrics()
    accepted = 'subgate_notifications_accepted_total{app="%s",kind="trade_status_sync",result="%s"}'
    assert f"{accepted % (APP_ID, 'stored')} 30.0" in metrics
    assert f"{accepted % (APP_ID, 'duplicate')} 60.0" in metrics


async def test_a_forged_notification_is_refused_by_a_worker_and_counted_by_the_primary(
    intake: Intake,
) -> None:
    forged = signed(trade_fields(when=datetime.now(UTC)), key=stranger_key())

    answers = [await intake.post(forged) for _ in range(3)]

    assert answers == [(403, "bad_signature", b"fail")] * 3
    assert await intake.gateway.store.count_notifications() == 0
    refused = f'subgate_notifications_refused_total{{app="{APP_ID}",reason="bad_signature"}} 3.0'
    errors = 'subgate_error_answers_total{code="bad_signature"} 3.0'

    async def counted() -> bool:
        metrics = await intake.metrics()
        return refused in metrics and errors in metrics

    await until(counted, "the workers' counts reach the primary's /metrics")

    async def flushed() -> bool:
        counts = await intake.gateway.store.refusal_counts()
        return [(c.app_id, c.reason, c.count) for c in counts] == [(APP_ID, "bad_signature", 3)]

    await until(flushed, "the primary flushes the workers' counts to the store")


async def test_a_follow_through_a_worker_appends_its_consent_event_with_the_notification(
    intake: Intake,
) -> None:
    follow = signed(
        life_account_fields("follow", USER_ID, when=datetime.now(UTC)), rule="V2", charset="gbk"
    )

    status, code, body = await intake.post(follow, charset="gbk")

    assert (status, code) == (200, "")
    assert b"<sign>" in body  # the signed ack, built by the worker with the app key
    events = await intake.gateway.store.consent_events(APP_ID, USER_ID)
    assert [(e.channel, e.action) for e in events] == [("life_account", ConsentAction.FOLLOW)]
    assert await intake.gateway.store.count_notifications(APP_ID) == 1


async def test_a_store_that_cannot_commit_makes_the_worker_answer_503_and_store_nothing(
    intake: Intake,
) -> None:
    writer = intake.gateway.store.writer  # type: ignore[attr-defined]
    await writer.maintain(lambda connection: connection.execute("PRAGMA query_only = 1"))
    notification = now_trade()

    refused = await intake.post(notification)
    await writer.maintain(lambda connection: connection.execute("PRAGMA query_only = 0"))
    resent = await intake.post(notification)

    assert refused == (503, "storage_unavailable", b"fail")
    assert resent == (200, "", b"success")
    assert await intake.gateway.store.count_notifications(APP_ID) == 1


async def test_a_worker_that_dies_is_replaced_while_the_other_keeps_serving(
    intake: Intake,
) -> None:
    victim, survivor = intake.workers.pids

    os.kill(victim, signal.SIGKILL)

    async def replaced() -> bool:
        pids = intake.workers.pids
        return len(pids) == 2 and victim not in pids

    await until(replaced, "the primary starts a new worker")
    assert survivor in intake.workers.pids and intake.workers.restarts == 1
    assert [await intake.post(now_trade()) for _ in range(4)] == [(200, "", b"success")] * 4


async def test_stopping_the_primary_stops_every_worker(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await start_gateway(worker_settings(tmp_path, workers=1), wall_clock())
    pids = gateway.app[INTAKE_WORKERS].pids

    await gateway.client.close()

    assert pids and not any(alive(pid) for pid in pids)
    assert not gateway.app[INTAKE_WORKERS].relay_path.parent.exists()


async def test_start_up_fails_with_a_clear_error_when_the_intake_port_is_taken(
    tmp_path: Path,
) -> None:
    settings = worker_settings(tmp_path, workers=1)
    workers = IntakeWorkers(settings, log_level=30)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", settings.server.intake_port or 0))
        taken.listen()
        store = await open_store(settings.storage.url)
        try:
            with pytest.raises(WorkerStartFailed, match="did not start"):
                await workers.start(StoreSink(store), RefusalCounter(), Metrics())
        finally:
            await store.close()

    assert workers.pids == []
    assert not workers.relay_path.parent.exists()


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ({"intake_workers": 2}, "intake_workers needs intake_port"),
        ({"intake_port": 9000}, "intake_port is only served by intake_workers"),
        ({"intake_workers": 1, "intake_port": 8080, "port": 8080}, "must differ from port"),
    ],
)
def test_intake_settings_that_cannot_work_are_refused_at_load(
    tmp_path: Path, server: dict[str, Any], problem: str
) -> None:
    with pytest.raises(SettingsError, match=problem):
        make_settings(tmp_path, **server)


async def test_notifications_waiting_on_the_store_at_shutdown_are_stored_and_acknowledged(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await start_gateway(worker_settings(tmp_path), wall_clock())
    release = threading.Event()
    writer = gateway.store.writer  # type: ignore[attr-defined]
    held = asyncio.create_task(writer.maintain(lambda _: release.wait(DEADLINE_SECONDS)))
    notifications = [now_trade() for _ in range(10)]
    async with aiohttp.ClientSession() as session:
        intake = Intake(gateway, session)
        posts = [asyncio.create_task(intake.post(fields)) for fields in notifications]

        async def all_waiting() -> bool:
            return gateway.app[STORE_SINK].in_flight == len(notifications)

        await until(all_waiting, "every notification waits on the held writer")
        closing = asyncio.create_task(gateway.client.close())

        port = gateway.settings.server.intake_port or 0

        async def no_longer_accepting() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) != 0

        await until(no_longer_accepting, "every worker has begun to stop")
        release.set()  # the held commits go through while the workers are draining
        answers = await asyncio.gather(*posts)
        await asyncio.gather(closing, held)

    assert answers == [(200, "", b"success")] * len(notifications)
    store = await open_store(gateway.settings.storage.url)
    try:
        assert await store.count_notifications(APP_ID) == len(notifications)
    finally:
        await store.close()


def process_state(pid: int) -> str | None:
    """The process's state letter, or None once it is gone (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return None if state in ("Z", "X") else state


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
async def worker_process(tmp_path: Path) -> Any:
    """``run.py serve`` with one intake worker, as a real process tree."""
    subgate = SubgateProcess(tmp_path, "http://127.0.0.1:9/gateway.do")
    intake_port = free_port()
    subgate.config.write_text(
        subgate.config.read_text().replace(
            "refusal_flush_seconds = 0.5",
            f"refusal_flush_seconds = 0.5\nintake_workers = 1\nintake_port = {intake_port}",
        )
    )
    async with aiohttp.ClientSession() as http:
        await subgate.start(http)
        yield subgate, intake_port, http
        await subgate.close()


async def test_a_killed_primary_takes_its_workers_down_with_it(worker_process: Any) -> None:
    subgate, intake_port, http = worker_process
    workers = children_of(subgate.pid)
    assert len(workers) == 1

    await subgate.kill()

    async def gone() -> bool:
        return process_state(workers[0]) is None

    await until(gone, "the orphaned worker notices the relay closed and exits")
    with pytest.raises(aiohttp.ClientError):
        await http.get(f"http://127.0.0.1:{intake_port}/healthz")


async def test_a_stopped_service_stops_its_workers_first_and_exits_cleanly(
    worker_process: Any,
) -> None:
    subgate, intake_port, http = worker_process
    workers = children_of(subgate.pid)
    async with http.get(f"http://127.0.0.1:{intake_port}/healthz") as answer:
        assert answer.status == 200

    code = await subgate.stop()

    assert code == 0
    assert workers and all(process_state(pid) is None for pid in workers)
    # Stopped by the primary's SIGTERM, not left to notice that the relay had gone.
    assert "the relay to the primary closed" not in subgate.log.read_text()


async def test_workers_in_front_of_a_postgresql_primary_store_each_notification_once(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    async with fresh_schema(server_url()) as url:
        settings = worker_settings(tmp_path).model_copy(
            update={"storage": StorageSettings(url=url)}
        )
        gateway = await start_gateway(settings, wall_clock())
        notifications = [now_trade() for _ in range(10)]
        async with aiohttp.ClientSession() as session:
            intake = Intake(gateway, session)
            answers = await asyncio.gather(*(intake.post(n) for n in notifications * 2))
        stored = await gateway.store.count_notifications(APP_ID)
        await gateway.client.close()  # before the schema is dropped

    assert answers == [(200, "", b"success")] * 20
    assert stored == 10


async def test_no_notification_a_worker_acknowledged_is_lost_when_the_primary_is_killed(
    worker_process: Any,
) -> None:
    subgate, intake_port, http = worker_process
    url = f"http://127.0.0.1:{intake_port}/alipay/notify"
    headers = {"Content-Type": ALIPAY_CONTENT_TYPE.format(charset="utf-8")}
    notifications = [now_trade() for _ in range(150)]
    acknowledged: list[str] = []

    async def poster(share: list[dict[str, str]]) -> None:
        for fields in share:
            try:
                async with http.post(url, data=form_body(fields, "utf-8"), headers=headers) as r:
                    if (r.status, await r.read()) == (200, b"success"):
                        acknowledged.append(fields["notify_id"])
            except aiohttp.ClientError:
                pass  # cut off by the kill: not acknowledged, Alipay would send it again

    posters = [asyncio.create_task(poster(notifications[i::16])) for i in range(16)]

    async def enough_acknowledged() -> bool:
        return len(acknowledged) >= 30

    await until(enough_acknowledged, "the load is under way")
    await subgate.kill()  # SIGKILL while notifications are in flight at the worker
    await asyncio.gather(*posters)

    with sqlite3.connect(subgate.db) as db:
        stored = {row[0] for row in db.execute("SELECT dedupe_key FROM notifications")}
    assert len(acknowledged) < len(notifications)  # the kill did cut the load short
    assert set(acknowledged) <= stored


def test_the_service_exits_with_a_clear_error_when_the_intake_port_is_taken(
    tmp_path: Path,
) -> None:
    """Start-up fails cleanly: the store opened before the workers is closed again, so the
    process exits instead of hanging on its threads."""
    subgate = SubgateProcess(tmp_path, "http://127.0.0.1:9/gateway.do")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        subgate.config.write_text(
            subgate.config.read_text().replace(
                "refusal_flush_seconds = 0.5",
                "refusal_flush_seconds = 0.5\nintake_workers = 1\n"
                f"intake_port = {taken.getsockname()[1]}",
            )
        )
        result = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "--config", str(subgate.config), "serve"],
            capture_output=True,
            text=True,
            timeout=DEADLINE_SECONDS * 2,
            check=False,
        )

    assert result.returncode == 1, result.stderr
    assert "subgate serve: intake worker" in result.stderr and "did not start" in result.stderr


def test_serve_refuses_a_port_that_is_the_intake_port(tmp_path: Path) -> None:
    subgate = SubgateProcess(tmp_path, "http://127.0.0.1:9/gateway.do")
    subgate.config.write_text(
        subgate.config.read_text().replace(
            "refusal_flush_seconds = 0.5",
            "refusal_flush_seconds = 0.5\nintake_workers = 1\nintake_port = 18999",
        )
    )

    serve = [sys.executable, str(ROOT / "run.py"), "--config", str(subgate.config), "serve"]

    result = subprocess.run(
        [*serve, "--port", "18999"],
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS * 2,
        check=False,
    )

    assert result.returncode == 1
    assert "subgate serve: --port 18999 is the intake_port" in result.stderr
