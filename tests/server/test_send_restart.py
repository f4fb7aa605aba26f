"""Crash and restart: real restarts of Subgate over the same SQLite file. A message reserved but
never attempted (``pending``, as earlier versions left it) is sent once by a later process; one
whose attempt had begun (from its reservation's commit on) becomes ``unknown`` and is never called
again; a queued one is delivered after the restart. No key ever makes two calls.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from server.platforms.calls import CallResult
from server.sending.outbox_worker import OutboxWorker
from server.sending.sender import MessageSender
from storage.models import MessageRecord, SendReservation, TemplateKind
from tests.server.conftest import APP_ID, NOW
from tests.server.fake_alipay import SEND_METHOD, FakeAlipay, transient
from tests.server.send_fixtures import (
    BACKOFF,
    LEASE_SECONDS,
    ONE_TIME,
    USER,
    Sending,
    new_key,
    one_time_body,
)

REAL_RUN_FOREVER = OutboxWorker.run_forever
DEAD_OWNER = "subgate-deadbeef0000"


class ProcessDied(Exception):
    """Stands in for SIGKILL at a chosen point: nothing after it runs in that process."""


async def die(message: MessageRecord, *, begun: bool = False) -> MessageRecord:
    """MessageSender.attempt of a process killed right after its reservation committed (which
    began the first attempt: the message is ``sending``, the platform not yet called)."""
    raise ProcessDied


def dying_after_the_call(sender: MessageSender) -> Callable[[MessageRecord], Awaitable[CallResult]]:
    """MessageSender._deliver of a process killed after Alipay got the call (and may have
    delivered it) but before the answer was recorded."""
    deliver = sender._deliver

    async def deliver_then_die(message: MessageRecord) -> CallResult:
        await deliver(message)
        raise ProcessDied

    return deliver_then_die


@pytest.fixture
async def env(env: Sending) -> Sending:
    """The shared ``env`` with one one-time credit given."""
    await env.give_credits(1)
    return env


def body_for(tag: str) -> dict[str, Any]:
    """A valid send whose keyword3 names it, so the fake's calls can be told apart."""
    body = one_time_body()
    body["data"] = {**body["data"], "keyword3": {"value": tag}}
    return body


def tags_called(fake: FakeAlipay) -> Counter[str]:
    return Counter(json.loads(c.biz["data"])["keyword3"]["value"] for c in fake.sends)


async def row_status(env: Sending, message_id: str) -> str:
    return (await env.row(message_id)).status


async def eventually(read: Callable[[], Awaitable[str]], wanted: str) -> None:
    """Wait (bounded, polling) until ``read()`` answers ``wanted``."""
    for _ in range(500):
        if await read() == wanted:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {wanted!r}")


async def reserve_as_dead_process(env: Sending, key: str) -> MessageRecord:
    """What a process of an earlier version left behind when it died right after reserving (it
    reserved without beginning): a pending row leased to it until a moment already past, and a
    spend in the ledger."""
    payload = {
        "to_user_id": USER,
        "user_template_id": ONE_TIME,
        "data": json.dumps({"keyword1": {"value": "订单已发货"}}, ensure_ascii=False),
    }
    outcome = await env.store.reserve_send(
        SendReservation(
            message_id="msg_reserved_by_the_dead_one",
            app_id=APP_ID,
            idempotency_key=key,
            request_sha256="0" * 64,
            channel="mini_template",
            user_id=USER,
            template_id=ONE_TIME,
            kind=TemplateKind.ONE_TIME,
            payload=json.dumps(payload, ensure_ascii=False),
            lease_owner=DEAD_OWNER,
            lease_until=NOW - timedelta(seconds=1),
            created_at=NOW - timedelta(seconds=5),
        )
    )
    assert not outcome.replayed
    return outcome.message


async def test_a_reservation_left_by_a_dead_process_is_sent_once_after_a_restart(
    env: Sending,
) -> None:
    message = await reserve_as_dead_process(env, new_key())
    assert await env.credits() == 0

    await env.restart()
    attempted = await env.run_outbox()
    # The restarted process's own background worker may have taken the message first, its call
    # still under way when this pass returns: what counts is that it ends sent, called once.
    await eventually(lambda: row_status(env, message.id), "sent")

    assert attempted in (0, 1)
    [call] = env.fake.sends
    assert call.biz["user_template_id"] == ONE_TIME
    assert json.loads(call.biz["data"]) == {"keyword1": {"value": "订单已发货"}}
    row = await env.row(message.id)
    assert (row.status, row.attempts, row.lease_owner) == ("sent", 1, None)
    env.later(3600)
    assert await env.run_outbox() == 0
    assert len(env.fake.sends) == 1
    assert await env.credits() == 0
    assert await env.actions() == ["accept", "spend"]
    await env.assert_projection_is_the_fold()


async def test_a_process_killed_after_its_reservation_before_the_call_leaves_an_unknown(
    env: Sending, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reservation's transaction begins the first attempt too (one commit fewer per send),
    so from that commit on the call may be under way: a process killed before calling leaves
    the message ``unknown``, never called, exactly as one killed during the call."""
    monkeypatch.setattr(env.sender, "attempt", die)  # this process dies after reserving
    key = new_key()
    body = body_for("killed-before-call")
    died = await env.send(body, key=key)
    assert (died.status, died.code) == (500, "internal_error")
    [(_, status, message_id)] = env.messages()
    assert status == "sending"

    await env.restart()
    env.later(LEASE_SECONDS + 1)
    assert await env.run_outbox() == 0

    row = await env.row(message_id)
    assert (row.status, row.attempts, row.sent_at) == ("unknown", 1, None)
    replay = await env.send(body, key=key)
    assert (replay.status, replay.body["status"]) == (202, "unknown")
    assert replay.body["message_id"] == message_id
    assert env.fake.calls == []
    assert await env.credits() == 0  # the credit stays spent: it is never sent twice
    assert await env.actions() == ["accept", "spend"]
    await env.assert_projection_is_the_fold()


async def test_a_process_killed_during_the_call_leaves_an_unknown_never_called_again(
    env: Sending, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(env.sender, "_deliver", dying_after_the_call(env.sender))
    key = new_key()
    body = body_for("killed-during-call")
    await env.send(body, key=key)
    [(_, status, message_id)] = env.messages()
    assert status == "sending"

    await env.restart()
    env.later(LEASE_SECONDS + 1)
    assert await env.run_outbox() == 0

    row = await env.row(message_id)
    assert (row.status, row.attempts, row.sent_at) == ("unknown", 1, None)
    assert row.last_error is not None and "interrupted" in row.last_error
    env.later(3600)
    assert await env.run_outbox() == 0
    replay = await env.send(body, key=key)
    assert (replay.status, replay.body["status"]) == (202, "unknown")
    assert tags_called(env.fake) == {"killed-during-call": 1}
    assert await env.credits() == 0  # it may have been delivered: the credit stays spent
    assert await env.actions() == ["accept", "spend"]
    await env.assert_projection_is_the_fold()


async def test_an_attempt_in_flight_with_an_expired_lease_becomes_unknown_after_restart(
    env: Sending,
) -> None:
    message = await reserve_as_dead_process(env, new_key())
    started = await env.store.begin_attempt(
        message.id, DEAD_OWNER, NOW - timedelta(seconds=4), NOW - timedelta(seconds=1)
    )
    assert started is not None and started.status == "sending"

    await env.restart()
    assert await env.run_outbox() == 0

    assert env.fake.calls == []
    row = await env.row(message.id)
    assert row.status == "unknown"
    assert await env.credits() == 0
    await env.assert_projection_is_the_fold()


async def test_a_queued_message_survives_a_restart_and_the_new_process_delivers_it(
    env: Sending,
) -> None:
    env.fake.script(SEND_METHOD, transient())
    key = new_key()
    queued = await env.send(body_for("queued"), key=key)
    assert queued.body["status"] == "queued"

    await env.restart()
    env.later(BACKOFF[0])
    assert await env.run_outbox() == 1

    answer = await env.message(queued.body["message_id"])
    assert (answer.body["status"], answer.body["attempts"]) == ("sent", 2)
    assert tags_called(env.fake) == {"queued": 2}  # the first attempt got 20000: not delivered
    replay = await env.send(body_for("queued"), key=key)
    assert (replay.status, replay.body["status"]) == (200, "sent")
    assert len(env.fake.sends) == 2
    assert await env.credits() == 0
    await env.assert_projection_is_the_fold()


async def test_the_background_worker_of_a_restarted_process_delivers_on_its_own(
    env: Sending, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.fake.script(SEND_METHOD, transient())
    queued = await env.send(body_for("background"))
    passes: asyncio.Queue[int] = asyncio.Queue()
    real_run_once = OutboxWorker.run_once

    async def observed(worker: OutboxWorker) -> int:
        attempted = await real_run_once(worker)
        await passes.put(attempted)
        return attempted

    monkeypatch.setattr(OutboxWorker, "run_once", observed)
    monkeypatch.setattr(OutboxWorker, "run_forever", REAL_RUN_FOREVER)
    env.later(BACKOFF[0])

    await env.restart()  # its background loop makes a first pass at once
    attempted = await asyncio.wait_for(passes.get(), timeout=5)

    assert attempted == 1
    row = await env.row(queued.body["message_id"])
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(env.fake.sends) == 2


async def test_across_crashes_and_restarts_no_key_makes_two_calls(
    env: Sending, monkeypatch: pytest.MonkeyPatch
) -> None:
    await env.give_credits(3)  # four in all
    keys = {tag: new_key() for tag in ("sent", "queued", "killed", "in-flight")}
    await env.send(body_for("sent"), key=keys["sent"])
    env.fake.script(SEND_METHOD, transient())
    await env.send(body_for("queued"), key=keys["queued"])
    monkeypatch.setattr(env.sender, "attempt", die)
    await env.send(body_for("killed"), key=keys["killed"])  # process 1 dies before calling
    await env.restart()
    monkeypatch.setattr(env.sender, "_deliver", dying_after_the_call(env.sender))
    await env.send(body_for("in-flight"), key=keys["in-flight"])  # process 2 dies mid-call

    for _ in range(2):  # two more processes: outbox passes, then every key replayed
        await env.restart()
        env.later(LEASE_SECONDS + 1)
        await env.run_outbox()
        await env.run_outbox()
        for tag, key in keys.items():
            replay = await env.send(body_for(tag), key=key)
            assert replay.status in (200, 202), replay.body

    assert tags_called(env.fake) == {"sent": 1, "queued": 2, "in-flight": 1}
    statuses = {key: status for key, status, _ in env.messages()}
    assert {tag: statuses[key] for tag, key in keys.items()} == {
        "sent": "sent",
        "queued": "sent",  # its first attempt was answered 20000: not delivered
        "killed": "unknown",  # its attempt had begun with the reservation: never called again
        "in-flight": "unknown",
    }
    assert await env.credits() == 0
    assert await env.actions() == ["accept"] * 4 + ["spend"] * 4
    await env.assert_projection_is_the_fold()
