"""``[outbox] call_processes``: gateway calls made by real worker processes.

Each test runs Subgate in this process with one call worker (``python -m
server.workers.call_process``, a real child process) and the fake Alipay gateway, whose oracle
verifies every request the worker signs. Killing the worker is a real SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.appkeys import CREDENTIALS
from server.platforms.alipay_classic import AlipayClient
from server.platforms.calls import CallOutcome
from server.settings import SettingsError, settings_from_mapping
from server.workers.call_connection import LOST, CallConnection
from server.workers.call_messages import CallWorkerOrders, result_from_values
from server.workers.call_pool import CALL_WORKERS, CallWorkers
from server.workers.supervision import WorkerStartFailed, worker_settings
from server.workers.wire import RelayError, encode_frame
from tests.server import guarded
from tests.server.conftest import APP_ID, NOW, StartGateway, app_config
from tests.server.fake_alipay import SEND_METHOD, FakeAlipay, hang, rejected, transient
from tests.server.send_fixtures import (
    ONE_TIME,
    TEMPLATES,
    TOKENS,
    USER,
    Sending,
    new_key,
    one_time_body,
    send_settings,
    start_sending,
)
from tests.server.subgate_process import alive

DEADLINE_SECONDS = 30.0


def with_call_workers(tmp_path: Path, fake: FakeAlipay, count: int = 1) -> Any:
    settings = send_settings(tmp_path, fake)
    outbox = settings.outbox.model_copy(update={"call_processes": count})
    return settings.model_copy(update={"outbox": outbox})


@pytest.fixture
async def env(start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay) -> Sending:
    return await start_sending(start_gateway, tmp_path, fake, with_call_workers(tmp_path, fake))


def workers_of(env: Sending) -> CallWorkers:
    return env.gateway.app[CALL_WORKERS]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for something another process makes true (a worker starts slower than a task)."""
    await guarded.until(condition, what, DEADLINE_SECONDS)


async def test_a_send_is_signed_by_the_worker_with_the_primarys_clock(env: Sending) -> None:
    workers = workers_of(env)
    [pid] = workers.pids
    assert pid != os.getpid()
    await env.give_credits(1)

    answer = await env.send(one_time_body())

    assert (answer.status, answer.body["status"]) == (200, "sent")
    assert (workers.calls, workers.made_here) == (1, 0)
    [call] = env.fake.sends  # verified by the oracle with the app's public key
    assert call.params["timestamp"] == "2026-11-23 16:00:00"  # the test clock, not the worker's
    assert call.biz["to_user_id"] == USER
    row = await env.row(answer.body["message_id"])
    assert (row.status, row.attempts, row.platform_code) == ("sent", 1, "10000")
    assert await env.credits() == 0
    await env.assert_projection_is_the_fold()


async def test_metrics_and_readiness_show_the_call_workers(env: Sending) -> None:
    await env.give_credits(1)
    await env.send(one_time_body())

    metrics = await env.gateway.client.get("/metrics")
    text = await metrics.text()
    ready = await env.gateway.client.get("/readyz")

    assert 'subgate_gateway_calls_total{made_in="worker"} 1.0' in text
    assert 'subgate_gateway_calls_total{made_in="service"} 0.0' in text
    assert "subgate_call_workers 1.0" in text
    assert "subgate_gateway_calls_lost_total 0.0" in text
    assert "subgate_call_worker_restarts_total 0.0" in text
    assert ready.status == 200
    assert (await ready.json())["checks"]["call_workers"] == 1


async def test_answers_are_classified_as_in_the_primary(env: Sending) -> None:
    env.fake.script(SEND_METHOD, rejected("USER_TEMPLATE_ILLEGAL"), transient())
    await env.give_credits(2)

    failed = await env.send(one_time_body())
    queued = await env.send(one_time_body())

    assert (failed.body["status"], failed.body["platform"]["sub_code"]) == (
        "failed",
        "USER_TEMPLATE_ILLEGAL",
    )
    assert queued.body["status"] == "queued"
    assert await env.actions() == ["accept", "accept", "spend", "refund", "spend"]
    env.later(1)
    assert await env.run_outbox() == 1  # the retry goes through the worker too
    assert (workers_of(env).calls, workers_of(env).made_here) == (3, 0)
    assert (await env.row(queued.body["message_id"])).status == "sent"


async def test_subscription_queries_go_through_the_worker(env: Sending) -> None:
    await env.give_credits(2)
    env.fake.subscribed(USER, ONE_TIME, "0")  # the user cancelled it on the platform

    answer = await env.sync()

    assert answer.status == 200, answer.body
    assert answer.body["changes"] == [{"template_id": ONE_TIME, "action": "cancel"}]
    workers = workers_of(env)
    assert (workers.calls, workers.made_here) == (len(env.fake.queries), 0)
    assert workers.calls == 2  # four registered templates, at most three per query
    state = await env.state(ONE_TIME)
    assert (state.status, state.credits, state.last_source) == ("cancelled", 0, "platform_query")


async def test_concurrent_sends_against_one_credit_still_make_exactly_one_call(
    env: Sending,
) -> None:
    await env.give_credits(1)

    answers = await asyncio.gather(*(env.send(one_time_body()) for _ in range(20)))

    assert sorted(a.status for a in answers) == [200] + [403] * 19
    assert len(env.fake.sends) == 1
    assert await env.credits() == 0


async def test_a_worker_killed_during_a_call_leaves_the_message_unknown_and_is_replaced(
    env: Sending,
) -> None:
    workers = workers_of(env)
    [pid] = workers.pids
    env.fake.script(SEND_METHOD, hang())
    await env.give_credits(2)
    key = new_key()
    sending = asyncio.create_task(env.send(one_time_body(), key=key))
    await until(lambda: bool(env.fake.sends), "the worker's request reached the platform")

    os.kill(pid, signal.SIGKILL)
    answer = await sending

    assert (answer.status, answer.body["status"]) == (202, "unknown")
    row = await env.row(answer.body["message_id"])
    assert row.status == "unknown" and row.last_error is not None
    assert "lost" in row.last_error
    assert await env.credits() == 1  # spent: the platform may have delivered it
    env.later(3600)
    assert await env.run_outbox() == 0  # never retried
    await until(lambda: workers.restarts == 1 and bool(workers.pids), "a worker replaced it")
    [replacement] = workers.pids
    assert replacement != pid and not alive(pid)
    after = await env.send(one_time_body())
    assert after.body["status"] == "sent"
    assert len(env.fake.sends) == 2
    replay = await env.send(one_time_body(), key=key)
    assert replay.body["status"] == "unknown"
    assert len(env.fake.sends) == 2
    text = await (await env.gateway.client.get("/metrics")).text()
    assert "subgate_gateway_calls_lost_total 1.0" in text
    assert "subgate_call_worker_restarts_total 1.0" in text
    await env.assert_projection_is_the_fold()


async def test_with_no_worker_serving_the_call_is_made_in_the_primary(env: Sending) -> None:
    workers = workers_of(env)
    workers.hold_restarts()  # as at shutdown: the dead worker is not replaced
    [pid] = workers.pids
    os.kill(pid, signal.SIGKILL)
    await until(lambda: not workers.pids, "the primary saw the worker die")
    await env.give_credits(1)

    answer = await env.send(one_time_body())

    assert answer.body["status"] == "sent"
    assert (workers.calls, workers.made_here) == (0, 1)
    assert len(env.fake.sends) == 1


async def test_a_request_the_wire_cannot_carry_is_made_in_the_primary(env: Sending) -> None:
    workers = workers_of(env)
    app = env.gateway.app[CREDENTIALS][APP_ID]
    body = {"to_user_id": USER, "user_template_id": ONE_TIME, "data": "{}", "n": 2**70}

    await workers.call(app, SEND_METHOD, body)

    assert (workers.calls, workers.made_here) == (0, 1)
    assert len(env.fake.sends) == 1 and workers.pids and workers.restarts == 0


async def test_a_worker_that_leaves_a_call_unanswered_is_killed_and_replaced(
    env: Sending,
) -> None:
    workers = workers_of(env)
    [pid] = workers.pids
    await env.give_credits(2)
    os.kill(pid, signal.SIGSTOP)  # alive, connected, and silent

    stuck = await env.send(one_time_body())

    assert (stuck.status, stuck.body["status"]) == (202, "unknown")
    row = await env.row(stuck.body["message_id"])
    assert row.last_error is not None and "did not answer" in row.last_error
    assert env.fake.calls == []  # it never got as far as the platform, but nobody can know that
    await until(lambda: workers.restarts == 1 and bool(workers.pids), "a worker replaced it")
    assert not alive(pid)
    assert (await env.send(one_time_body())).body["status"] == "sent"
    assert (workers.calls, workers.lost) == (2, 1)


async def test_stopping_finishes_the_calls_in_flight_and_makes_new_ones_in_the_primary(
    env: Sending,
) -> None:
    workers = workers_of(env)
    [pid] = workers.pids
    env.fake.script(SEND_METHOD, hang())  # the worker's own timeout ends this call
    await env.give_credits(2)
    in_flight = asyncio.create_task(env.send(one_time_body()))
    await until(lambda: bool(env.fake.sends), "the worker's call reached the platform")

    stopping = asyncio.create_task(workers.stop())
    await until(lambda: not workers.pids, "the primary stopped routing calls to the worker")
    during = await env.send(one_time_body())
    first = await in_flight
    await stopping

    assert during.body["status"] == "sent"  # made in the primary meanwhile
    assert (first.status, first.body["status"]) == (202, "queued")  # the worker's own answer
    row = await env.row(first.body["message_id"])
    assert row.last_error == "timeout"  # not lost: the worker finished it before exiting
    assert (workers.calls, workers.made_here, workers.lost, workers.restarts) == (1, 1, 0, 0)
    assert not alive(pid)


async def test_an_answer_for_a_call_nobody_waits_for_is_dropped_quietly(env: Sending) -> None:
    workers = workers_of(env)
    [pid] = workers.pids
    env.fake.script(SEND_METHOD, hang())
    app = env.gateway.app[CREDENTIALS][APP_ID]
    body = {"to_user_id": USER, "user_template_id": ONE_TIME, "data": "{}"}
    waiting = asyncio.create_task(workers.call(app, SEND_METHOD, body))
    await until(lambda: bool(env.fake.sends), "the worker's call reached the platform")
    waiting.cancel()  # as at shutdown: the caller goes away, the worker answers later
    with pytest.raises(asyncio.CancelledError):
        await waiting
    connection = workers.pool.slots[0].link  # type: ignore[union-attr]
    await until(lambda: not connection._abandoned, "the late answer arrived")

    assert workers.pids == [pid] and workers.restarts == 0  # the worker is still trusted
    await env.give_credits(1)
    assert (await env.send(one_time_body())).body["status"] == "sent"


async def test_a_worker_that_breaks_the_protocol_is_dropped_and_its_calls_end_unknown() -> None:
    connection, theirs, broken = await socket_worker()
    with theirs:
        call = asyncio.create_task(connection.call(("app", "m", {}, 0)))
        await until(lambda: bool(connection._pending), "the call was sent")
        theirs.sendall(encode_frame((1, "answer", ("delivered", None, None, None, None, None, {}))))

        result = await call

    assert broken.is_set() and not connection.serving
    assert result is not None
    assert (result.outcome, result.error) == (CallOutcome.UNKNOWN, LOST)


async def test_a_worker_signalled_to_stop_says_so_and_new_calls_are_made_in_the_primary(
    env: Sending,
) -> None:
    workers = workers_of(env)
    [pid] = workers.pids
    await env.give_credits(1)

    os.kill(pid, signal.SIGTERM)  # from outside, as a service manager stopping the group
    await until(lambda: not workers.pids, "the worker said it is stopping")
    answer = await env.send(one_time_body())

    assert answer.body["status"] == "sent"
    assert (workers.calls, workers.made_here, workers.lost) == (0, 1, 0)
    await until(lambda: workers.restarts == 1 and bool(workers.pids), "a worker replaced it")
    assert not alive(pid)


async def socket_worker() -> tuple[CallConnection, socket.socket, asyncio.Event]:
    """A CallConnection over a real socket pair whose other end the test speaks for the worker."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    broken = asyncio.Event()
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        lambda: CallConnection(30.0, on_broken=broken.set), sock=ours
    )
    theirs.sendall(encode_frame((0, "ready", 1)))
    await until(lambda: connection.serving, "the worker said it is ready")
    return connection, theirs, broken


async def test_a_call_refused_by_a_stopping_worker_is_reported_as_not_made() -> None:
    connection, theirs, broken = await socket_worker()
    with theirs:
        call = asyncio.create_task(connection.call(("app", "m", {}, 0)))
        await until(lambda: bool(connection._pending), "the call was sent")
        theirs.sendall(encode_frame((1, "refused", None)))

        assert await call is None  # CallWorkers then makes it in the primary
        assert connection.serving and not broken.is_set()


async def test_a_stopping_worker_gets_nothing_more_and_its_socket_closes_once_idle() -> None:
    connection, theirs, broken = await socket_worker()
    with theirs:
        theirs.sendall(encode_frame((0, "stopping", None)))
        await until(lambda: not connection.serving, "the primary drained the worker")

        await until(lambda: connection.closed.is_set(), "the primary closed its end")
        assert theirs.recv(1) == b""  # the worker sees the end of the stream and exits
        assert not broken.is_set()  # nothing was killed


async def test_workers_stop_with_the_app(
    start_gateway: StartGateway, tmp_path: Path, fake: FakeAlipay
) -> None:
    env = await start_sending(start_gateway, tmp_path, fake, with_call_workers(tmp_path, fake, 2))
    pids = workers_of(env).pids
    assert len(pids) == 2

    await env.gateway.client.close()

    assert not any(alive(pid) for pid in pids)


async def test_a_worker_that_cannot_load_its_keys_fails_start_up_and_leaves_nothing_running(
    tmp_path: Path, fake: FakeAlipay
) -> None:
    key_file = tmp_path / "app_private_key.pem"
    key_file.write_text(app_config()["app_private_key"])
    config = app_config(APP_ID, templates=TEMPLATES, gateway_url=fake.url)
    settings = send_settings(tmp_path, fake, apps=[{**config, "app_private_key": str(key_file)}])
    settings = settings.model_copy(
        update={"outbox": settings.outbox.model_copy(update={"call_processes": 2})}
    )
    key_file.unlink()  # gone after the primary loaded it: the workers cannot
    workers = CallWorkers(settings, _unused_client(), lambda: NOW, 30)

    with pytest.raises(WorkerStartFailed, match="did not start"):
        await workers.start()

    assert workers.pids == []
    assert workers.pool.started == set()


def _unused_client() -> AlipayClient:
    return AlipayClient(None, lambda: NOW, 1.0)  # type: ignore[arg-type]


def test_the_orders_carry_the_app_keys_but_no_token_top_secret_or_database_url(
    tmp_path: Path,
) -> None:
    top_secret = "top-secret-0123456789abcdef"
    settings = settings_from_mapping(
        {
            "storage": {"url": f"sqlite:///{tmp_path / 'private-name.db'}"},
            "apps": [app_config()],
            "tokens": TOKENS,
            "top_apps": [{"name": "jym", "app_key": "12345678", "app_secret": top_secret}],
        },
        base_dir=tmp_path,
    )
    orders = CallWorkerOrders(worker_settings(settings), 5, 20)

    text = pickle.dumps(orders)

    assert TOKENS[0]["token"].encode() not in text
    assert top_secret.encode() not in text
    assert b"private-name.db" not in text
    assert orders.settings.apps[0].app_private_key is not None  # it signs with it


@pytest.mark.parametrize(
    "values",
    [
        ("success", None, None, None, None, None, []),  # node is not a dict
        ("delivered", None, None, None, None, None, {}),  # not an outcome
        ("success", 10000, None, None, None, None, {}),  # code is not text
        ("success", None, None),  # too short
        ["success", None, None, None, None, None, {}],  # not a tuple
    ],
)
def test_an_answer_that_is_not_the_protocol_is_refused(values: Any) -> None:
    with pytest.raises(RelayError):
        result_from_values(values)


def test_settings_bound_the_number_of_workers(tmp_path: Path) -> None:
    data: dict[str, Any] = {"apps": [app_config()], "tokens": TOKENS}
    for bad in (-1, 17, "two"):
        with pytest.raises(SettingsError, match="call_processes"):
            settings_from_mapping({**data, "outbox": {"call_processes": bad}}, base_dir=tmp_path)
    ok = settings_from_mapping({**data, "outbox": {"call_processes": 2}}, base_dir=tmp_path)
    assert ok.outbox.call_processes == 2
    assert json.loads(ok.outbox.model_dump_json())["call_processes"] == 2
