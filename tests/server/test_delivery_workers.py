"""``[delivery] processes``: pushes posted by real push worker processes.

Each test starts real workers (``python -m server.workers.push_process``) against real receivers
on 127.0.0.1; signatures are checked with the ``standardwebhooks`` reference library. Killing a
worker is a real SIGKILL. Waiting is on conditions, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from server.delivery.batch import Outgoing
from server.delivery.destinations import build_deliveries
from server.delivery.keys import DELIVERY
from server.delivery.worker import DestinationWorker
from server.events.keys import EVENT_PAYLOADS
from server.settings import Settings, SettingsError, settings_from_mapping
from server.workers.orders import encode_orders
from server.workers.push_link import LOST
from server.workers.push_pool import PUSH_WORKERS, PushWorkers
from server.workers.push_process import NICENESS
from storage.models import ConsentAction, ConsentEvent, ConsentSource, DeliveryVerdict
from tests.server import guarded
from tests.server.conftest import APP_ID, NOW, Clock, Gateway, StartGateway, app_config
from tests.server.delivery_fixtures import (
    SECRET,
    USER_A,
    USER_B,
    change_consent,
    destination,
    eventually,
    failing_first_event_of,
    pushing_settings,
    real_now,
    signed_by,
)
from tests.server.receiver import Received, Receiver, receiving
from tests.server.subgate_process import alive

DEADLINE_SECONDS = 30.0
DELIVERED = DeliveryVerdict.DELIVERED
RETRIED = DeliveryVerdict.RETRY


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


def with_push_workers(settings: Settings, count: int = 1) -> Settings:
    delivery = settings.delivery.model_copy(update={"processes": count})
    return settings.model_copy(update={"delivery": delivery})


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for something another process makes true (a worker starts slower than a task)."""
    await guarded.until(condition, what, DEADLINE_SECONDS)


@asynccontextmanager
async def stepped_through_workers(
    gateway: Gateway, settings: Settings
) -> AsyncIterator[tuple[DestinationWorker, PushWorkers]]:
    """The one destination of ``settings`` driven by ``step()`` on the gateway's store and
    clock, its batches posted by a push worker."""
    workers = PushWorkers(with_push_workers(settings), 30)
    await workers.start()
    deliveries = build_deliveries(
        settings.destinations,
        settings.base_dir,
        gateway.store,
        gateway.app[EVENT_PAYLOADS],
        gateway.clock,
        draw=lambda: 1.0,
        handover=workers,
    )
    [worker] = list(deliveries)
    await worker.courier.open()
    try:
        await worker.fan_out()
        yield worker, workers
    finally:
        await worker.courier.close()
        await workers.stop()


async def verdicts(worker: DestinationWorker) -> list[DeliveryVerdict]:
    return [result.verdict for result in (await worker.step()).results]


async def test_pushes_through_a_worker_are_signed_and_keep_per_user_order_while_retried(
    gateway: Gateway, receiver: Receiver, tmp_path: Path
) -> None:
    failed: list[str] = []

    receiver.answer = failing_first_event_of(USER_A, failed)
    table = destination(receiver.url, events=["consent.changed"])
    settings = pushing_settings(tmp_path, table)
    async with stepped_through_workers(gateway, settings) as (worker, workers):
        for user, action in [
            (USER_A, ConsentAction.GRANT),
            (USER_B, ConsentAction.GRANT),
            (USER_A, ConsentAction.REVOKE),
            (USER_B, ConsentAction.REVOKE),
        ]:
            await change_consent(gateway.store, user, action, NOW)
        first = await verdicts(worker)  # A's first fails, B's first goes
        second = await verdicts(worker)  # B's second goes; A's second waits for A's first
        gateway.clock.now += timedelta(seconds=5)  # A's first is due again
        retried = [await verdicts(worker) for _ in range(3)]
        assert workers.handed == 5 and workers.posted_here == 0

    assert sorted(first) == [DELIVERED, RETRIED] and second == [DELIVERED]
    assert retried == [[DELIVERED], [DELIVERED], []]
    received = receiver.received
    assert all(signed_by(one, SECRET) for one in received)
    # Signed at the primary's (the test's) clock, not the worker's.
    stamps = {int(r.headers["webhook-timestamp"]) for r in receiver.received}
    assert stamps <= {int(NOW.timestamp()), int(NOW.timestamp()) + 5}
    order = [
        (r.payload["data"]["user_id"], r.payload["data"]["sequence"]) for r in receiver.received
    ]
    a_events = [seq for user, seq in order if user == USER_A]
    b_events = [seq for user, seq in order if user == USER_B]
    assert a_events[0] == a_events[1] and a_events[1:] == sorted(a_events[1:])  # failed, retried
    assert b_events == sorted(b_events) and len(b_events) == 2


async def test_a_post_is_not_started_when_its_timeout_would_outlast_the_lease(
    gateway: Gateway, receiver: Receiver, tmp_path: Path
) -> None:
    settings = pushing_settings(tmp_path, destination(receiver.url, timeout_seconds=10))
    workers = PushWorkers(with_push_workers(settings), 30)
    await workers.start()
    try:
        now = gateway.clock()
        items = [Outgoing("evt_1", b"{}"), Outgoing("evt_2", b"{}")]
        short = await workers.post("orders", items, now, now + timedelta(seconds=9))
        long = await workers.post("orders", items, now, now + timedelta(seconds=11))
    finally:
        await workers.stop()

    assert short == [None, None]
    assert long is not None and [a.answer.status_code for a in long if a] == [204, 204]
    assert [r.webhook_id for r in receiver.received] == ["evt_1", "evt_2"]


class HeldAnswers:
    """A receiver's answers held until ``release``, counting the requests it holds at once."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.holding = 0
        self.most_at_once = 0

    async def answer(self, request: web.Request, received: Received) -> web.StreamResponse:
        self.holding += 1
        self.most_at_once = max(self.most_at_once, self.holding)
        try:
            await self.open.wait()
        finally:
            self.holding -= 1
        return web.Response(status=204)


async def test_a_destinations_concurrency_holds_while_its_posts_move_from_a_worker_to_here(
    gateway: Gateway, receiver: Receiver, tmp_path: Path
) -> None:
    held = HeldAnswers()
    receiver.answer = held.answer
    table = destination(receiver.url, events=["consent.changed"], concurrency=2)
    settings = pushing_settings(tmp_path, table)
    async with stepped_through_workers(gateway, settings) as (worker, workers):
        for user in (USER_A, USER_B):
            await change_consent(gateway.store, user, ConsentAction.GRANT, NOW)
        first = asyncio.create_task(worker.step())  # handed to the worker: both posts held
        await receiver.wait_for(2)
        [pid] = workers.pids
        os.kill(pid, signal.SIGTERM)  # it stops taking batches, and finishes the two it holds
        await until(lambda: not workers.pids, "the worker said it is stopping")
        for user in ("2088000000000003", "2088000000000004"):
            await change_consent(gateway.store, user, ConsentAction.GRANT, NOW)
        second = asyncio.create_task(worker.step())  # refused by the worker: posted here
        await until(
            lambda: worker.courier.waiting_for_worker == 1 or len(receiver.received) >= 4,
            "the second batch waits for the worker's, or overlaps it",
        )
        held.open.set()
        steps = [await first, await second]

    assert [len(step.results) for step in steps] == [2, 2]
    assert workers.handed == 2 and workers.posted_here == 2
    assert len(receiver.received) == 4 and held.most_at_once == 2


async def running_with_workers(
    start_gateway: StartGateway, tmp_path: Path, store_url: str | None, **table: Any
) -> Gateway:
    settings = pushing_settings(tmp_path, destination(**table), storage_url=store_url)
    return await start_gateway(with_push_workers(settings), Clock(real_now()))


async def grant_all(gateway: Gateway, users: list[str]) -> None:
    """One grant to each user, written in one commit (so claimed in one batch)."""
    events = [
        ConsentEvent(
            app_id=APP_ID,
            user_id=user,
            channel="jym_push",
            template_id="default",
            action=ConsentAction.GRANT,
            occurred_at=gateway.clock(),
            source=ConsentSource.OPERATOR,
            evidence="test",
        )
        for user in users
    ]
    await gateway.store.append_consent_events(events, gateway.clock())


async def delivered_ids(gateway: Gateway, count: int) -> set[int]:
    histories = await gateway.store.delivery_histories("orders", "delivered", count + 10)
    return {history.delivery.event_id for history in histories}


async def test_a_worker_killed_mid_batch_loses_no_event_and_is_started_again(
    start_gateway: StartGateway, tmp_path: Path, store_url: str, receiver: Receiver
) -> None:
    release = asyncio.Event()

    async def hold_until_released(request: web.Request, got: Received) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    receiver.answer = hold_until_released
    gateway = await running_with_workers(
        start_gateway, tmp_path, store_url, url=receiver.url, retry_initial_seconds=0.2
    )
    workers = gateway.app[PUSH_WORKERS]
    [pid] = workers.pids
    users = [f"20880000000{n:05d}" for n in range(12)]
    await grant_all(gateway, users)  # one commit: one batch of twelve
    await receiver.wait_for(8)  # the destination's concurrency: every slot is held, four wait

    os.kill(pid, signal.SIGKILL)
    await until(lambda: workers.lost == len(users), "the primary saw the attempts lost")

    async def all_kept_failing() -> bool:
        failing = await gateway.store.delivery_histories("orders", "failing", len(users) + 10)
        return len(failing) == len(users)

    # The retries are scheduled from the clock when the verdicts are made, a few turns of the
    # loop after the attempts were counted lost: the clock moves only once they are kept.
    await eventually(all_kept_failing, DEADLINE_SECONDS)
    release.set()
    gateway.clock.now += timedelta(seconds=1)  # the lost attempts' retries are due
    gateway.app[DELIVERY].wake("orders")

    async def all_delivered() -> bool:
        return len(await delivered_ids(gateway, len(users))) == len(users)

    await eventually(all_delivered, DEADLINE_SECONDS)
    await until(lambda: workers.restarts == 1 and bool(workers.pids), "a worker replaced it")
    assert workers.pids != [pid] and not alive(pid)
    histories = await gateway.store.delivery_histories("orders", "delivered", 50)
    errors = [a.error for h in histories for a in h.attempts if a.error]
    assert LOST in errors
    payloads = {r.payload["data"]["user_id"] for r in receiver.received if r.verify(SECRET)}
    assert payloads == set(users)
    text = await (await gateway.client.get("/metrics")).text()
    assert f"subgate_push_attempts_lost_total {float(workers.lost)}" in text
    assert "subgate_push_worker_restarts_total 1.0" in text
    assert "subgate_push_workers 1.0" in text


async def test_with_no_worker_serving_the_primary_posts_itself(
    start_gateway: StartGateway, tmp_path: Path, receiver: Receiver
) -> None:
    gateway = await running_with_workers(start_gateway, tmp_path, None, url=receiver.url)
    workers = gateway.app[PUSH_WORKERS]
    workers.hold_restarts()  # as at shutdown: the dead worker is not replaced
    [pid] = workers.pids
    os.kill(pid, signal.SIGKILL)
    await until(lambda: not workers.pids, "the primary saw the worker die")

    await change_consent(gateway.store, USER_A, ConsentAction.GRANT, gateway.clock())
    [received] = await receiver.wait_for(1)

    assert received.verify(SECRET)["data"]["user_id"] == USER_A
    assert workers.posted_here >= 1 and workers.lost == 0
    text = await (await gateway.client.get("/metrics")).text()
    assert 'subgate_push_attempts_total{made_in="service"}' in text
    assert "subgate_push_workers 0.0" in text


async def test_workers_stop_with_the_app_and_hold_no_secret_in_argv_or_environment(
    start_gateway: StartGateway, tmp_path: Path, receiver: Receiver
) -> None:
    settings = with_push_workers(pushing_settings(tmp_path, destination(receiver.url)), 2)
    gateway = await start_gateway(settings, Clock(real_now()))
    pids = gateway.app[PUSH_WORKERS].pids
    assert len(pids) == 2
    for pid in pids:
        shown = process_identity(pid)
        for secret in (SECRET.encode(), base64.b64decode(SECRET.removeprefix("whsec_"))):
            assert secret not in shown and base64.b64encode(secret) not in shown
        assert b"subgate.db" not in shown

    await gateway.client.close()

    assert not any(alive(pid) for pid in pids)


async def test_workers_run_below_the_primary_so_that_intake_comes_first(
    start_gateway: StartGateway, tmp_path: Path, receiver: Receiver
) -> None:
    settings = with_push_workers(pushing_settings(tmp_path, destination(receiver.url)), 1)
    gateway = await start_gateway(settings, Clock(real_now()))
    [pid] = gateway.app[PUSH_WORKERS].pids
    ours = os.getpriority(os.PRIO_PROCESS, 0)

    await until(
        lambda: os.getpriority(os.PRIO_PROCESS, pid) == min(ours + NICENESS, 19),
        "the worker lowered its priority",
    )
    assert os.getpriority(os.PRIO_PROCESS, 0) == ours  # the primary's own is untouched


def process_identity(pid: int) -> bytes:
    """A process's argv and environment, as anyone on the machine may read them."""
    return b"".join(Path(f"/proc/{pid}/{name}").read_bytes() for name in ("cmdline", "environ"))


def test_settings_bound_the_number_of_push_workers(tmp_path: Path) -> None:
    data: dict[str, Any] = {"apps": [app_config()], "destinations": [destination("http://h/x")]}
    for bad in (-1, 17, "two"):
        with pytest.raises(SettingsError, match="processes"):
            settings_from_mapping({**data, "delivery": {"processes": bad}}, base_dir=tmp_path)
    assert settings_from_mapping(data, base_dir=tmp_path, environ={}).delivery.processes == 1
    environ = {"SUBGATE_DELIVERY__PROCESSES": "0"}
    assert settings_from_mapping(data, base_dir=tmp_path, environ=environ).delivery.processes == 0
    with pytest.raises(SettingsError, match="delivery"):
        settings_from_mapping({**data, "delivery": {"workers": 2}}, base_dir=tmp_path)


def test_the_orders_carry_the_destinations_keys_and_nothing_else_secret(tmp_path: Path) -> None:
    secret_file = tmp_path / "orders.whsec"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    data: dict[str, Any] = {
        "storage": {"url": f"sqlite:///{tmp_path / 'private-name.db'}"},
        "apps": [app_config()],
        "tokens": [{"token": "t" * 32, "apps": ["*"], "scopes": ["read"]}],
        "destinations": [destination("http://h/x", secret=str(secret_file))],
    }
    settings = settings_from_mapping(data, base_dir=tmp_path, environ={})
    workers = PushWorkers(settings, 20)

    orders = encode_orders(workers.pool._kind.orders(7))

    assert SECRET.encode() in orders  # read from the file by the primary: the worker reads none
    assert b"t" * 32 not in orders and b"private-name.db" not in orders
    assert b"PRIVATE KEY" not in orders and b"app_private_key" not in orders
