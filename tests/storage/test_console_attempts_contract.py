"""Every attempt of a message, kept by the triggers of ``0009_message_attempts`` on every
backend: a retried, then sent message shows both attempts with their codes; a definite failure
and an attempt reserved with its first attempt begun show theirs; an attempt whose worker died
mid-call shows no answer (not the previous attempt's); a second finish adds nothing; and a
database from before 0009 shows the last attempt its messages' rows kept."""

from __future__ import annotations

from datetime import timedelta

from storage import Store
from storage.models import (
    AttemptOutcome,
    AttemptResult,
    MessageAttempt,
    MessageRecord,
    TemplateKind,
)
from tests.storage.conftest import StoreFactory
from tests.storage.records import APP, NOW, accept, reservation
from tests.storage.test_settle_migration import MESSAGE_ID, write_old_database

SENT_AT = NOW + timedelta(hours=1)  # when reservation() creates its messages
LATER = SENT_AT + timedelta(minutes=2)
LEASE = LATER + timedelta(minutes=5)
RETRY_AT = LATER + timedelta(minutes=30)


async def pending(store: Store, key: str = "k-1") -> MessageRecord:
    """A pending message against a long-term subscription, leased to worker-a."""
    await store.append_consent_events([accept(template_id="T-long")], NOW)
    wanted = reservation(key, template_id="T-long", kind=TemplateKind.LONG_TERM)
    message = (await store.reserve_send(wanted)).message
    await store.claim_due_messages("worker-a", LATER, LEASE, 10)
    return message


def attempt(
    number: int, started: object, finished: object, status: str, **rest: object
) -> dict[str, object]:
    blank = dict.fromkeys(("platform_code", "platform_msg", "sub_code", "sub_msg", "error"))
    return {
        "number": number,
        "started_at": started,
        "finished_at": finished,
        "status": status,
        **blank,
        **rest,
    }


def dumped(attempts: list[MessageAttempt]) -> list[dict[str, object]]:
    return [a.model_dump() for a in attempts]


async def test_a_retried_then_sent_message_keeps_both_attempts(store: Store) -> None:
    message = await pending(store)
    await store.begin_attempt(message.id, "worker-a", LATER, LEASE)
    busy = AttemptResult(
        outcome=AttemptOutcome.RETRY,
        sub_code="aop.ACQ.SYSTEM_ERROR",
        sub_msg="busy",
        error="platform busy",
        next_attempt_at=RETRY_AT,
    )
    await store.finish_attempt(message.id, busy, LATER + timedelta(seconds=1))
    await store.claim_due_messages("worker-b", RETRY_AT, RETRY_AT + timedelta(minutes=5), 10)
    await store.begin_attempt(message.id, "worker-b", RETRY_AT, RETRY_AT + timedelta(minutes=5))
    sent = AttemptResult(outcome=AttemptOutcome.SENT, platform_code="10000", platform_msg="Success")
    done = RETRY_AT + timedelta(seconds=2)
    await store.finish_attempt(message.id, sent, done)
    await store.finish_attempt(message.id, sent, done + timedelta(seconds=5))  # changes nothing

    assert dumped(await store.message_attempts(message.id)) == [
        attempt(
            1,
            LATER,
            LATER + timedelta(seconds=1),
            "queued",
            sub_code="aop.ACQ.SYSTEM_ERROR",
            sub_msg="busy",
            error="platform busy",
        ),
        attempt(2, RETRY_AT, done, "sent", platform_code="10000", platform_msg="Success"),
    ]
    assert await store.message_attempts("msg_nobody") == []


async def test_a_first_attempt_begun_at_reservation_and_rejected_is_kept(store: Store) -> None:
    await store.append_consent_events([accept()], NOW)
    message = (await store.reserve_send(reservation("k-1"), begin=True)).message
    rejected = AttemptResult(
        outcome=AttemptOutcome.REJECTED,
        platform_code="40004",
        platform_msg="Business Failed",
        sub_code="isv.invalid-template",
        error="rejected",
    )

    await store.finish_attempt(message.id, rejected, LATER)

    assert dumped(await store.message_attempts(message.id)) == [
        attempt(
            1,
            SENT_AT,
            LATER,
            "failed",
            platform_code="40004",
            platform_msg="Business Failed",
            sub_code="isv.invalid-template",
            error="rejected",
        )
    ]


async def test_an_attempt_abandoned_mid_call_shows_no_answer(store: Store) -> None:
    message = await pending(store)
    await store.begin_attempt(message.id, "worker-a", LATER, LEASE)
    answered = AttemptResult(
        outcome=AttemptOutcome.RETRY, platform_code="20000", error="busy", next_attempt_at=RETRY_AT
    )
    await store.finish_attempt(message.id, answered, LATER)
    lease = RETRY_AT + timedelta(minutes=5)
    await store.claim_due_messages("worker-b", RETRY_AT, lease, 10)
    await store.begin_attempt(message.id, "worker-b", RETRY_AT, lease)

    assert await store.abandon_in_flight(lease + timedelta(seconds=1)) == [message.id]

    [first, second] = await store.message_attempts(message.id)
    assert (first.status, first.platform_code) == ("queued", "20000")
    assert second.model_dump() == attempt(
        2,
        RETRY_AT,
        lease + timedelta(seconds=1),
        "unknown",
        error="the attempt was interrupted; the platform may have delivered it",
    )


async def test_a_message_from_before_0009_shows_its_last_attempt(
    backend: str, store_url: str, store_factory: StoreFactory
) -> None:
    await write_old_database(backend, store_url)  # an unknown message under 0001-0006
    store = await store_factory()  # applies 0007 onwards

    attempts = await store.message_attempts(MESSAGE_ID)

    assert dumped(attempts) == [attempt(1, None, NOW, "unknown")]
    assert (await store.get_message(APP, MESSAGE_ID)) is not None
