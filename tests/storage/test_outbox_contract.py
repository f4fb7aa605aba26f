"""The outbox every Store backend must have: spend-once reservation, leases, attempts, refunds."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from storage import Store
from storage.errors import ConsentRequired, IdempotencyMismatch
from storage.ledger import fold
from storage.models import (
    AttemptOutcome,
    AttemptResult,
    ConsentAction,
    ConsentState,
    MessageRecord,
    MessageStatus,
    ReserveOutcome,
    TemplateKind,
)
from tests.storage.records import APP, NOW, TEMPLATE, USER, accept, reservation

SENT_AT = NOW + timedelta(hours=1)  # when reservation() creates its messages
LATER = SENT_AT + timedelta(minutes=2)  # every lease taken at reservation has run out
LEASE = LATER + timedelta(minutes=5)


async def credits(store: Store, n: int, template_id: str = TEMPLATE) -> None:
    await store.append_consent_events(
        [accept(m, template_id=template_id) for m in range(n)], NOW + timedelta(minutes=n)
    )


async def state_is_the_fold(store: Store, template_id: str = TEMPLATE) -> ConsentState:
    [state] = await store.consent_states(APP, USER, "mini_template", template_id)
    history = await store.consent_history(APP, USER, "mini_template", template_id)
    assert state == fold(APP, USER, "mini_template", template_id, [(e, e.id) for e in history])
    return state


async def reserved(store: Store, count: int) -> list[MessageRecord]:
    """``count`` pending messages against a long-term subscription (no credit runs out)."""
    await store.append_consent_events([accept(template_id="T-long")], NOW)
    messages = []
    for i in range(count):
        outcome = await store.reserve_send(
            reservation(f"k-{i}", template_id="T-long", kind=TemplateKind.LONG_TERM)
        )
        messages.append(outcome.message)
    return messages


async def test_a_reservation_spends_the_credit_and_queues_a_pending_message(store: Store) -> None:
    await credits(store, 1)
    wanted = reservation("k-1")

    outcome = await store.reserve_send(wanted)

    message = outcome.message
    assert not outcome.replayed
    assert (message.id, message.status, message.attempts) == (
        wanted.message_id,
        MessageStatus.PENDING,
        0,
    )
    assert (message.lease_owner, message.lease_until) == ("worker-a", wanted.lease_until)
    assert message.next_attempt_at == message.created_at == wanted.created_at
    assert await store.get_message(APP, message.id) == message
    assert await store.get_message("another-app", message.id) is None
    assert (await state_is_the_fold(store)).credits == 0
    history = await store.consent_history(APP, USER, "mini_template", TEMPLATE)
    assert (history[-1].action, history[-1].evidence) == (
        ConsentAction.SPEND,
        f"message:{message.id}",
    )
    assert await store.count_messages() == await store.count_messages("pending") == 1
    assert await store.message_counts() == {("mini_template", "pending"): 1}


async def test_a_reservation_that_begins_commits_its_first_attempt_with_it(store: Store) -> None:
    await credits(store, 1)
    wanted = reservation("k-1")

    outcome = await store.reserve_send(wanted, begin=True)

    message = outcome.message
    assert outcome.begun and not outcome.replayed
    assert (message.status, message.attempts, message.lease_owner, message.lease_until) == (
        MessageStatus.SENDING,
        1,
        "worker-a",
        wanted.lease_until,
    )
    assert message.updated_at == message.created_at == wanted.created_at
    assert await store.get_message(APP, message.id) == message
    assert (await state_is_the_fold(store)).credits == 0
    assert await store.message_counts() == {("mini_template", "sending"): 1}
    # in flight already: no one claims it, and it cannot begin a second time
    assert await store.claim_due_messages("worker-b", LATER, LEASE, 10) == []
    assert await store.begin_attempt(message.id, "worker-a", SENT_AT, LEASE) is None
    finished = await store.finish_attempt(
        message.id, AttemptResult(outcome=AttemptOutcome.SENT), LATER
    )
    assert (finished.status, finished.attempts) == (MessageStatus.SENT, 1)


async def test_a_replay_never_begins_and_a_refusal_writes_nothing(store: Store) -> None:
    await credits(store, 1)
    first = await store.reserve_send(reservation("k-1"), begin=True)

    again = await store.reserve_send(reservation("k-1"), begin=True)
    with pytest.raises(ConsentRequired):
        await store.reserve_send(reservation("k-2"), begin=True)

    assert again.replayed and not again.begun and again.message == first.message
    assert (again.message.status, again.message.attempts) == (MessageStatus.SENDING, 1)
    assert await store.count_messages() == 1
    assert (await state_is_the_fold(store)).credits == 0


async def test_fifty_concurrent_copies_of_one_send_begin_once(store: Store) -> None:
    await credits(store, 2)

    outcomes = await asyncio.gather(
        *(store.reserve_send(reservation("k-1"), begin=True) for _ in range(50))
    )

    assert sorted(o.begun for o in outcomes) == [False] * 49 + [True]
    assert sorted(o.replayed for o in outcomes) == [False] + [True] * 49
    [message] = {o.message.id: o.message for o in outcomes if o.begun}.values()
    stored = await store.get_message(APP, message.id)
    assert stored is not None and (stored.status, stored.attempts) == (MessageStatus.SENDING, 1)
    assert (await state_is_the_fold(store)).credits == 1


async def test_a_replay_returns_the_first_message_and_reserves_nothing(store: Store) -> None:
    await credits(store, 2)
    first = await store.reserve_send(reservation("k-1"))

    again = await store.reserve_send(reservation("k-1"))

    assert again.replayed and again.message == first.message
    assert await store.count_messages() == 1
    assert (await state_is_the_fold(store)).credits == 1


async def test_the_same_key_with_another_request_is_refused(store: Store) -> None:
    await credits(store, 2)
    await store.reserve_send(reservation("k-1", request="first"))

    with pytest.raises(IdempotencyMismatch):
        await store.reserve_send(reservation("k-1", request="second"))
    with pytest.raises(IdempotencyMismatch):  # another user under the same key, too
        await store.reserve_send(reservation("k-1", request="third", user_id="2088B"))

    assert await store.count_messages() == 1
    assert (await state_is_the_fold(store)).credits == 1


async def test_refusals_sent_together_with_good_sends_fail_alone(store: Store) -> None:
    """Reservations arriving together share a transaction: each refusal answers its own send,
    and the good sends beside it commit."""
    await credits(store, 3)
    await store.reserve_send(reservation("k-used", request="first"))

    results = await asyncio.gather(
        store.reserve_send(reservation("k-1")),
        store.reserve_send(reservation("k-used", request="second")),
        store.reserve_send(reservation("k-other-user", user_id="2088B")),
        store.reserve_send(reservation("k-2"), begin=True),
        return_exceptions=True,
    )

    assert isinstance(results[0], ReserveOutcome) and not results[0].replayed
    assert isinstance(results[1], IdempotencyMismatch)
    assert isinstance(results[2], ConsentRequired)
    assert isinstance(results[3], ReserveOutcome) and results[3].begun
    assert await store.count_messages() == 3
    assert (await state_is_the_fold(store)).credits == 0


async def test_without_consent_nothing_is_written(store: Store) -> None:
    with pytest.raises(ConsentRequired):
        await store.reserve_send(reservation("k-1"))

    assert await store.count_messages() == 0
    assert await store.consent_events(APP) == []
    assert await store.consent_states(APP, USER) == []


async def test_fifty_concurrent_sends_against_one_credit_reserve_exactly_one(
    store: Store,
) -> None:
    await credits(store, 1)

    results = await asyncio.gather(
        *(store.reserve_send(reservation(f"k-{i}")) for i in range(50)), return_exceptions=True
    )

    won = [r for r in results if isinstance(r, ReserveOutcome)]
    assert len(won) == 1 and not won[0].replayed
    assert all(isinstance(r, ConsentRequired) for r in results if r is not won[0])
    assert await store.count_messages() == 1
    assert (await state_is_the_fold(store)).credits == 0


async def test_fifty_concurrent_copies_of_one_send_reserve_once(store: Store) -> None:
    await credits(store, 2)

    outcomes = await asyncio.gather(*(store.reserve_send(reservation("k-1")) for _ in range(50)))

    assert sorted(o.replayed for o in outcomes) == [False] + [True] * 49
    assert len({o.message.id for o in outcomes}) == 1
    assert (await state_is_the_fold(store)).credits == 1


async def test_a_long_term_subscription_allows_every_send(store: Store) -> None:
    messages = await reserved(store, 3)

    assert len({m.id for m in messages}) == 3
    assert (await state_is_the_fold(store, "T-long")).credits == 0


async def test_two_owners_claim_disjoint_sets_of_due_messages(store: Store) -> None:
    messages = await reserved(store, 6)

    first, second = await asyncio.gather(
        store.claim_due_messages("worker-b", LATER, LEASE, 4),
        store.claim_due_messages("worker-c", LATER, LEASE, 4),
    )

    assert {m.id for m in first}.isdisjoint({m.id for m in second})
    assert {m.id for m in first + second} == {m.id for m in messages}
    assert {(m.lease_owner, m.lease_until) for m in first} <= {("worker-b", LEASE)}
    assert {(m.lease_owner, m.lease_until) for m in second} <= {("worker-c", LEASE)}
    assert await store.claim_due_messages("worker-d", LATER, LEASE, 10) == []


async def test_a_live_lease_or_a_future_attempt_is_not_claimed(store: Store) -> None:
    [message] = await reserved(store, 1)

    assert await store.claim_due_messages("worker-b", SENT_AT, LEASE, 10) == []
    [claimed] = await store.claim_due_messages("worker-b", LATER, LEASE, 10)
    assert claimed.id == message.id
    assert await store.claim_due_messages("worker-c", LEASE - timedelta(seconds=1), LEASE, 10) == []
    [reclaimed] = await store.claim_due_messages(
        "worker-c", LEASE + timedelta(seconds=1), LEASE, 10
    )
    assert reclaimed.lease_owner == "worker-c"


async def test_only_the_lease_owner_begins_an_attempt_and_only_once(store: Store) -> None:
    [message] = await reserved(store, 1)
    await store.claim_due_messages("worker-b", LATER, LEASE, 10)

    assert await store.begin_attempt(message.id, "worker-a", LATER, LEASE) is None
    started = await store.begin_attempt(message.id, "worker-b", LATER, LEASE)
    assert started is not None
    assert (started.status, started.attempts, started.updated_at) == (
        MessageStatus.SENDING,
        1,
        LATER,
    )
    assert await store.begin_attempt(message.id, "worker-b", LATER, LEASE) is None
    assert await store.claim_due_messages("worker-c", LEASE + timedelta(hours=1), LEASE, 10) == []


async def _in_flight(store: Store) -> MessageRecord:
    await credits(store, 1)
    outcome = await store.reserve_send(reservation("k-1"))
    started = await store.begin_attempt(outcome.message.id, "worker-a", SENT_AT, LEASE)
    assert started is not None
    return started


async def test_a_sent_message_keeps_the_credit_spent(store: Store) -> None:
    message = await _in_flight(store)
    done = LATER + timedelta(seconds=3)

    sent = await store.finish_attempt(
        message.id,
        AttemptResult(outcome=AttemptOutcome.SENT, platform_code="10000", platform_msg="Success"),
        done,
    )

    assert (sent.status, sent.sent_at, sent.updated_at) == (MessageStatus.SENT, done, done)
    assert (sent.lease_owner, sent.lease_until, sent.platform_code) == (None, None, "10000")
    assert await store.get_message(APP, message.id) == sent
    assert (await state_is_the_fold(store)).credits == 0


@pytest.mark.parametrize("outcome", [AttemptOutcome.REJECTED, AttemptOutcome.EXHAUSTED])
async def test_a_definite_failure_refunds_the_credit_once(
    store: Store, outcome: AttemptOutcome
) -> None:
    message = await _in_flight(store)
    result = AttemptResult(outcome=outcome, sub_code="isv.invalid-template", error="rejected")

    settled = await asyncio.gather(
        *(store.finish_attempt(message.id, result, LATER) for _ in range(5))
    )
    await store.finish_attempt(message.id, result, LATER + timedelta(minutes=1))

    assert {m.status for m in settled} == {MessageStatus.FAILED}
    assert (await store.get_message(APP, message.id)) == settled[0]
    state = await state_is_the_fold(store)
    assert state.credits == 1
    refunds = [
        e
        for e in await store.consent_history(APP, USER, "mini_template", TEMPLATE)
        if e.action is ConsentAction.REFUND
    ]
    assert [e.evidence for e in refunds] == [f"message:{message.id}"]


async def test_a_refund_in_the_same_millisecond_as_its_spend_still_gives_the_credit_back(
    store: Store,
) -> None:
    message = await _in_flight(store)

    await store.finish_attempt(message.id, AttemptResult(outcome=AttemptOutcome.REJECTED), SENT_AT)

    assert (await state_is_the_fold(store)).credits == 1


async def test_sends_in_one_millisecond_are_logged_in_the_order_they_were_decided(
    store: Store,
) -> None:
    await credits(store, 3)

    sent = [(await store.reserve_send(reservation(f"k-{i}"))).message for i in range(3)]

    spends = [
        e
        for e in await store.consent_history(APP, USER, "mini_template", TEMPLATE)
        if e.action is ConsentAction.SPEND
    ]
    assert [e.evidence for e in spends] == [f"message:{m.id}" for m in sent]
    assert [e.occurred_at for e in spends] == [
        SENT_AT + timedelta(milliseconds=i) for i in range(3)
    ]
    assert (await state_is_the_fold(store)).credits == 0


async def test_a_send_stamped_before_its_credit_was_granted_still_spends_it(store: Store) -> None:
    # Another host's clock, a little behind: the spend must still fold after the acceptance.
    await store.append_consent_events([accept(30)], NOW)

    await store.reserve_send(reservation("k-1", created_at=NOW))

    assert (await state_is_the_fold(store)).credits == 0
    with pytest.raises(ConsentRequired):
        await store.reserve_send(reservation("k-2", created_at=NOW))


async def test_a_transient_failure_is_queued_for_its_next_attempt(store: Store) -> None:
    message = await _in_flight(store)
    retry_at = LATER + timedelta(minutes=30)

    queued = await store.finish_attempt(
        message.id, AttemptResult(outcome=AttemptOutcome.RETRY, next_attempt_at=retry_at), LATER
    )

    assert (queued.status, queued.next_attempt_at, queued.lease_owner) == (
        MessageStatus.QUEUED,
        retry_at,
        None,
    )
    assert (await state_is_the_fold(store)).credits == 0
    assert (
        await store.claim_due_messages("worker-b", retry_at - timedelta(seconds=1), LEASE, 9) == []
    )
    [claimed] = await store.claim_due_messages(
        "worker-b", retry_at, retry_at + timedelta(days=1), 9
    )
    assert claimed.id == message.id and claimed.attempts == 1


async def test_an_unknown_outcome_keeps_the_credit_spent_and_is_never_claimed(store: Store) -> None:
    message = await _in_flight(store)

    unknown = await store.finish_attempt(
        message.id, AttemptResult(outcome=AttemptOutcome.UNKNOWN, error="bad signature"), LATER
    )

    assert unknown.status is MessageStatus.UNKNOWN
    assert (await state_is_the_fold(store)).credits == 0
    assert await store.claim_due_messages("worker-b", LEASE + timedelta(days=1), LEASE, 9) == []


async def test_finishing_a_message_that_does_not_exist_fails_alone(store: Store) -> None:
    message = await _in_flight(store)

    outcomes = await asyncio.gather(
        store.finish_attempt("msg_nobody", AttemptResult(outcome=AttemptOutcome.SENT), LATER),
        store.finish_attempt(message.id, AttemptResult(outcome=AttemptOutcome.SENT), LATER),
        return_exceptions=True,
    )

    assert isinstance(outcomes[0], KeyError)
    assert isinstance(outcomes[1], MessageRecord) and outcomes[1].status is MessageStatus.SENT
    assert await store.get_message(APP, "msg_nobody") is None


async def test_an_expired_attempt_is_abandoned_as_unknown_and_never_refunded(store: Store) -> None:
    message = await _in_flight(store)
    [pending] = await reserved(store, 1)  # its lease ran out too, but no attempt is in flight
    expired = LEASE + timedelta(seconds=1)

    assert await store.abandon_in_flight(LEASE - timedelta(seconds=1)) == []
    abandoned = await asyncio.gather(*(store.abandon_in_flight(expired) for _ in range(3)))
    late = await store.finish_attempt(
        message.id, AttemptResult(outcome=AttemptOutcome.REJECTED), expired
    )

    assert sorted(i for ids in abandoned for i in ids) == [message.id]
    assert (late.status, late.lease_owner, late.updated_at) == (
        MessageStatus.UNKNOWN,
        None,
        expired,
    )
    assert late.last_error
    assert (await state_is_the_fold(store)).credits == 0
    still = await store.get_message(APP, pending.id)
    assert still is not None and still.status is MessageStatus.PENDING
