"""Spend-once under concurrency, and idempotency: one credit is one call, whatever arrives."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from storage.models import ReserveOutcome, SendReservation
from tests.server.conftest import APP_ID
from tests.server.fake_alipay import SEND_METHOD, transient
from tests.server.send_fixtures import (
    LONG_TERM,
    Answer,
    Sending,
    long_term_body,
    new_key,
    one_time_body,
)


def outcomes(answers: list[Answer]) -> Counter[tuple[int, str | None]]:
    return Counter((a.status, a.body.get("status") or a.code) for a in answers)


async def test_fifty_concurrent_sends_against_one_credit_make_exactly_one_call(
    env: Sending,
) -> None:
    await env.give_credits(1)

    answers = await asyncio.gather(*(env.send(one_time_body()) for _ in range(50)))

    assert outcomes(answers) == {(200, "sent"): 1, (403, "consent_required"): 49}
    assert len(env.fake.sends) == 1
    assert [status for _, status, _ in env.messages()] == ["sent"]
    assert await env.credits() == 0
    assert await env.actions() == ["accept", "spend"]
    await env.assert_projection_is_the_fold()


async def test_ten_concurrent_sends_against_two_credits_make_exactly_two_calls(
    env: Sending,
) -> None:
    await env.give_credits(2)

    answers = await asyncio.gather(*(env.send(one_time_body()) for _ in range(10)))

    assert outcomes(answers) == {(200, "sent"): 2, (403, "consent_required"): 8}
    assert len(env.fake.sends) == 2
    assert len(env.messages()) == 2
    assert await env.credits() == 0
    assert await env.actions() == ["accept", "accept", "spend", "spend"]
    await env.assert_projection_is_the_fold()


async def test_concurrent_sends_to_a_long_term_subscriber_are_all_sent(env: Sending) -> None:
    await env.accept(LONG_TERM)

    answers = await asyncio.gather(*(env.send(long_term_body()) for _ in range(10)))

    assert outcomes(answers) == {(200, "sent"): 10}
    assert len(env.fake.sends) == 10
    await env.assert_projection_is_the_fold()


async def test_the_same_key_and_body_again_gives_the_same_answer_and_no_second_call(
    env: Sending,
) -> None:
    await env.give_credits(2)
    key = new_key()

    first = await env.send(one_time_body(), key=key)
    again = [await env.send(one_time_body(), key=key) for _ in range(3)]

    assert (first.status, first.body["status"]) == (200, "sent")
    assert [(a.status, a.body) for a in again] == [(200, first.body)] * 3
    assert len(env.fake.sends) == 1
    assert [k for k, _, _ in env.messages()] == [key]
    assert await env.credits() == 1  # the second credit is untouched
    assert await env.actions() == ["accept", "accept", "spend"]
    await env.assert_projection_is_the_fold()


async def test_ten_concurrent_requests_with_one_key_make_one_reservation_and_one_call(
    env: Sending,
) -> None:
    await env.give_credits(2)
    key = new_key()

    answers = await asyncio.gather(*(env.send(one_time_body(), key=key) for _ in range(10)))

    assert {(a.status, a.body["status"]) for a in answers} == {(200, "sent")}
    assert len({a.body["message_id"] for a in answers}) == 1
    assert all(a.body == answers[0].body for a in answers)
    assert len(env.fake.sends) == 1
    assert [k for k, _, _ in env.messages()] == [key]
    assert await env.credits() == 1
    assert await env.actions() == ["accept", "accept", "spend"]
    await env.assert_projection_is_the_fold()


async def test_the_same_key_with_another_body_is_a_conflict_and_changes_nothing(
    env: Sending,
) -> None:
    await env.give_credits(2)
    key = new_key()
    first = await env.send(one_time_body(), key=key)
    changed = one_time_body(page="pages/other")

    answer = await env.send(changed, key=key)

    assert (answer.status, answer.code) == (409, "idempotency_conflict")
    assert len(env.fake.sends) == 1
    assert env.messages() == [(key, "sent", first.body["message_id"])]
    assert await env.credits() == 1
    assert await env.actions() == ["accept", "accept", "spend"]
    await env.assert_projection_is_the_fold()


async def test_a_replay_of_a_queued_message_answers_queued_without_calling(env: Sending) -> None:
    await env.give_credits(1)
    env.fake.script(SEND_METHOD, transient())
    key = new_key()
    first = await env.send(one_time_body(), key=key)

    again = await env.send(one_time_body(), key=key)

    assert (first.status, first.body["status"]) == (202, "queued")
    assert (again.status, again.body) == (202, first.body)
    assert len(env.fake.sends) == 1
    assert await env.actions() == ["accept", "spend"]


async def test_a_replay_after_the_credit_is_gone_still_answers_the_original(
    env: Sending,
) -> None:
    await env.give_credits(1)
    key = new_key()
    first = await env.send(one_time_body(), key=key)
    assert await env.credits() == 0

    again = await env.send(one_time_body(), key=key)

    assert (again.status, again.body) == (200, first.body)
    assert len(env.fake.sends) == 1


async def test_a_send_whose_caller_is_cancelled_while_reserving_is_still_sent_once(
    env: Sending, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reservation commits even when its caller has gone, and it begins the attempt: the
    send must then go on to its call, or the credit would be spent on a message never sent."""
    await env.give_credits(1)
    reserving = asyncio.Event()
    reserve_send = env.store.reserve_send

    async def reserve_and_tell(reservation: SendReservation, **options: bool) -> ReserveOutcome:
        reserving.set()  # the job is queued for the writer before this coroutine next yields
        return await reserve_send(reservation, **options)

    monkeypatch.setattr(env.store, "reserve_send", reserve_and_tell)
    key, body = new_key(), one_time_body()
    caller = asyncio.create_task(env.sender.send(APP_ID, body, key))
    await reserving.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller

    replay = await env.sender.send(APP_ID, body, key)  # waits for the attempt under way

    assert replay.status == "sent"
    assert len(env.fake.sends) == 1
    assert [status for _, status, _ in env.messages()] == ["sent"]
    assert await env.credits() == 0
    assert await env.actions() == ["accept", "spend"]
