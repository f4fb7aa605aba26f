"""A destination's worker driven one step at a time on a real SQLite store, against a real
receiver, with the gateway's clock moved by the test: delivery, retries on the backoff schedule,
give-up, the same ``webhook-id`` on every attempt, per-user order and leases.

``step()`` is one fan-out, one claim, one batch posted and its verdicts committed: nothing here
waits on a timer to order what happens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from server.delivery.worker import DestinationWorker
from storage.models import ConsentAction, DeliveryStatus, DeliveryVerdict
from tests.server.conftest import NOW, Gateway
from tests.server.delivery_fixtures import (
    SECRET,
    USER_A,
    USER_B,
    change_consent,
    failing_first_event_of,
    signed_by,
    stepped_worker,
)
from tests.server.notifications import post, signed, trade_fields
from tests.server.receiver import Received, Receiver, answering, receiving

RETRIED = DeliveryVerdict.RETRY
DELIVERED = DeliveryVerdict.DELIVERED
DEAD = DeliveryVerdict.DEAD


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


async def notify(gateway: Gateway) -> str:
    fields = signed(trade_fields())
    status, _, _ = await post(gateway.client, fields)
    assert status == 200
    return fields["notify_id"]


async def verdicts(worker: DestinationWorker) -> list[DeliveryVerdict]:
    return [result.verdict for result in (await worker.step()).results]


async def test_a_2xx_delivers_the_event_once_with_its_payload(
    gateway: Gateway, receiver: Receiver
) -> None:
    async with stepped_worker(gateway, receiver.url) as worker:
        notify_id = await notify(gateway)

        step = await worker.step()
        again = await worker.step()

    assert (step.read, [r.verdict for r in step.results]) == (1, [DELIVERED])
    assert (again.read, again.results) == (0, ())
    (received,) = receiver.received
    assert received.type == "notification.received"
    assert received.payload["data"]["notify_id"] == notify_id
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert signed_by(received, SECRET)
    [history] = await gateway.store.delivery_histories("orders", "delivered", 10)
    assert f"evt_{history.delivery.event_id}" == received.webhook_id
    assert history.delivery.status is DeliveryStatus.DELIVERED
    [attempt] = history.attempts
    assert (attempt.status_code, attempt.error, attempt.attempted_at) == (204, None, NOW)
    assert attempt.latency_ms >= 0


async def test_a_failing_delivery_is_retried_on_the_backoff_then_dead(
    gateway: Gateway, receiver: Receiver
) -> None:
    receiver.answer = answering(500, b"not today")
    schedule: dict[str, Any] = {
        "retry_initial_seconds": 5,
        "retry_max_seconds": 20,
        "give_up_after_seconds": 60,
    }
    seen: list[tuple[float, DeliveryVerdict]] = []
    async with stepped_worker(gateway, receiver.url, **schedule) as worker:
        await notify(gateway)
        while not seen or seen[-1][1] is not DEAD:
            step = await worker.step()
            [result] = step.results
            seen.append(((gateway.clock.now - NOW).total_seconds(), result.verdict))
            if result.next_attempt_at is not None:
                # Not a moment early: just before it is due, nothing is claimed.
                gateway.clock.now = result.next_attempt_at - timedelta(milliseconds=1)
                assert (await worker.step()).results == ()
                gateway.clock.now = result.next_attempt_at
        gateway.clock.now += timedelta(days=30)
        after = await worker.step()

    # The ceiling doubles from 5 s up to 20 s (the draw is pinned at its top); the attempt at
    # 75 s is 60 s or more after the delivery was made: dead, and never tried again.
    assert seen == [
        (0, RETRIED),
        (5, RETRIED),
        (15, RETRIED),
        (35, RETRIED),
        (55, RETRIED),
        (75, DEAD),
    ]
    assert after.results == ()
    assert len(receiver.received) == 6
    assert len(set(receiver.ids())) == 1  # the same webhook-id on every attempt
    stamps = [int(r.headers["webhook-timestamp"]) - int(NOW.timestamp()) for r in receiver.received]
    assert stamps == [0, 5, 15, 35, 55, 75]  # each attempt's own time, each signed
    assert all(signed_by(received, SECRET) for received in receiver.received)
    [history] = await gateway.store.delivery_histories("orders", "dead", 10)
    assert [(a.status_code, a.error) for a in history.attempts] == [(500, "HTTP 500")] * 6


async def test_a_refused_connection_is_retried_like_an_error_answer(gateway: Gateway) -> None:
    async with receiving() as gone:
        url = gone.url
    async with stepped_worker(gateway, url) as worker:
        await notify(gateway)

        [result] = (await worker.step()).results

    assert result.verdict is RETRIED and result.attempt.status_code is None
    assert result.attempt.error == "cannot connect: Connection refused"
    assert result.next_attempt_at is not None
    assert NOW < result.next_attempt_at <= NOW + timedelta(seconds=5)


async def test_events_of_one_user_wait_while_an_earlier_one_is_retried(
    gateway: Gateway, receiver: Receiver
) -> None:
    failed: list[str] = []

    receiver.answer = failing_first_event_of(USER_A, failed)
    async with stepped_worker(gateway, receiver.url, events=["consent.changed"]) as worker:
        for user, action in [
            (USER_A, ConsentAction.GRANT),
            (USER_B, ConsentAction.GRANT),
            (USER_A, ConsentAction.REVOKE),
            (USER_B, ConsentAction.REVOKE),
            (USER_A, ConsentAction.GRANT),
        ]:
            await change_consent(gateway.store, user, action, NOW)

        first = await verdicts(worker)  # A's first fails, B's first goes
        second = await verdicts(worker)  # B's second goes; A's second waits for A's first
        idle = await verdicts(worker)
        gateway.clock.now += timedelta(seconds=5)  # A's first is due again
        retried = [await verdicts(worker) for _ in range(4)]

    assert sorted(first) == [DELIVERED, RETRIED] and second == [DELIVERED] and idle == []
    assert retried == [[DELIVERED], [DELIVERED], [DELIVERED], []]
    order = [
        (r.payload["data"]["user_id"], r.payload["data"]["sequence"]) for r in receiver.received
    ]
    a_events = [seq for user, seq in order if user == USER_A]
    b_events = [seq for user, seq in order if user == USER_B]
    assert a_events[0] == a_events[1] and a_events[1:] == sorted(a_events[1:])  # failed, retried
    assert len(a_events) == 4 and len(set(a_events)) == 3
    assert b_events == sorted(b_events) and len(b_events) == 2
    # B's events were both delivered before A's first was tried again.
    assert order.index((USER_A, a_events[0]), 1) > max(order.index((USER_B, s)) for s in b_events)


async def test_events_without_a_user_are_not_held_back(
    gateway: Gateway, receiver: Receiver
) -> None:
    calls: list[str] = []

    async def fail_first(request: web.Request, got: Received) -> web.StreamResponse:
        calls.append(got.webhook_id)
        return web.Response(status=500 if len(calls) == 1 else 200)

    receiver.answer = fail_first
    async with stepped_worker(gateway, receiver.url) as worker:
        await notify(gateway)
        await notify(gateway)
        await notify(gateway)

        first = await verdicts(worker)

    # One of three notifications failed; the other two went in the same batch regardless.
    assert sorted(first) == [DELIVERED, DELIVERED, RETRIED]
    assert len(set(calls)) == 3


async def test_only_the_events_the_destination_takes_become_deliveries(
    gateway: Gateway, receiver: Receiver
) -> None:
    async with stepped_worker(gateway, receiver.url, events=["consent.*"]) as worker:
        await notify(gateway)
        await change_consent(gateway.store, USER_A, ConsentAction.GRANT, NOW)

        step = await worker.step()

    assert step.read == 2 and [r.verdict for r in step.results] == [DELIVERED]
    assert [r.type for r in receiver.received] == ["consent.changed"]


async def test_a_delivery_leased_by_a_dead_process_is_taken_over_when_its_lease_ends(
    gateway: Gateway, receiver: Receiver
) -> None:
    async with stepped_worker(gateway, receiver.url) as worker:
        await notify(gateway)
        await worker.fan_out()
        lease_until = NOW + timedelta(seconds=30)
        [taken] = await gateway.store.claim_deliveries("orders", "crashed", NOW, lease_until, 10)

        while_leased = await worker.step()
        gateway.clock.now = lease_until + timedelta(seconds=1)
        after = await worker.step()

    assert while_leased.results == ()
    assert [r.delivery_id for r in after.results] == [taken.delivery.id]
    assert after.results[0].verdict is DELIVERED and len(receiver.received) == 1


async def test_a_huge_error_answer_is_cut_off_and_kept_as_a_short_error(
    gateway: Gateway, receiver: Receiver
) -> None:
    receiver.answer = answering(500, b"<html>" + b"x" * 4_000_000)
    async with stepped_worker(gateway, receiver.url, max_response_bytes=1000) as worker:
        await notify(gateway)

        [result] = (await worker.step()).results

    assert result.verdict is RETRIED and result.attempt.status_code == 500
    assert result.attempt.error == "HTTP 500; answer cut off after 1000 bytes"
    [history] = await gateway.store.delivery_histories("orders", "failing", 10)
    assert history.delivery.last_error == "HTTP 500; answer cut off after 1000 bytes"


async def test_a_request_built_ahead_is_signed_again_in_its_attempts_second(
    gateway: Gateway, receiver: Receiver
) -> None:
    """With one slot, each next request is built while the post before it waits for its
    answer; the receiver moves the clock on before answering, so each next attempt is made in a
    later second than its request was built in."""
    built: list[int] = []

    async def later_each_time(request: web.Request, got: Received) -> web.StreamResponse:
        gateway.clock.now += timedelta(seconds=3)
        return web.Response(status=204)

    receiver.answer = later_each_time
    async with stepped_worker(gateway, receiver.url, concurrency=1) as worker:
        payloads = worker.courier._payloads
        body = payloads.body

        def counted(event: Any) -> bytes:
            built.append(event.id)
            return body(event)

        payloads.body = counted  # type: ignore[method-assign]
        for _ in range(3):
            await notify(gateway)

        step = await worker.step()

    assert [r.verdict for r in step.results] == [DELIVERED] * 3
    assert sorted(built) == sorted(set(built)) and len(built) == 3  # each payload built once
    stamps = [int(received.headers["webhook-timestamp"]) for received in receiver.received]
    attempted = sorted(int(r.attempt.attempted_at.timestamp()) for r in step.results)
    assert stamps == attempted == [stamps[0], stamps[0] + 3, stamps[0] + 6]
    assert all(signed_by(received, SECRET) for received in receiver.received)
