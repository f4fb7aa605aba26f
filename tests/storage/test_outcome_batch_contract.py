"""Attempt outcomes finished together (one group commit on either store: SQLite's writer, and
on PostgreSQL one UPDATE per batch, ``storage/postgres/outcomes.py``): every answer is what is
stored, each message keeps one attempt, one ``message.updated`` event and its place in the
totals, a second finish of one message changes nothing, a message that does not exist fails
alone; and on PostgreSQL an outcome the database refuses fails alone while the rest of its
batch lands."""

from __future__ import annotations

import asyncio
from collections import Counter

from storage import StorageUnavailable, Store, open_store
from storage.models import (
    AttemptOutcome,
    AttemptResult,
    EventType,
    MessageRecord,
    MessageStatus,
    StoredEvent,
)
from storage.postgres import PostgresStore
from storage.sqlite import SQLiteStore
from tests.storage.event_log import log
from tests.storage.records import APP, NOW, accept
from tests.storage.test_console_counts_contract import LATER, counted, long_term

OUTCOMES = [AttemptOutcome.SENT, AttemptOutcome.RETRY, AttemptOutcome.UNKNOWN]


def commits(store: Store) -> int:
    """Group commits of outcomes (PostgreSQL) or of every write (SQLite) so far."""
    if isinstance(store, SQLiteStore):
        return store.writer.batches
    assert isinstance(store, PostgresStore)
    return store.outcomes.group.batches


async def in_flight(store: Store, count: int) -> list[MessageRecord]:
    """``count`` messages reserved with their first attempt begun, on a long-term template."""
    await store.append_consent_events([accept(template_id="T-long")], NOW)
    made = await asyncio.gather(
        *(store.reserve_send(long_term(f"k-{i}"), begin=True) for i in range(count))
    )
    return [outcome.message for outcome in made]


async def updates(store: Store) -> list[StoredEvent]:
    """The app's ``message.updated`` events."""
    return [e for e in await log(store) if e.type is EventType.MESSAGE_UPDATED]


def result(number: int) -> AttemptResult:
    outcome = OUTCOMES[number % len(OUTCOMES)]
    return AttemptResult(
        outcome=outcome,
        platform_code="10000" if outcome is AttemptOutcome.SENT else None,
        sub_msg=f"answer {number}",
        next_attempt_at=LATER if outcome is AttemptOutcome.RETRY else None,
    )


async def test_outcomes_finished_together_each_answer_what_is_stored(store: Store) -> None:
    messages = await in_flight(store, 24)
    before = commits(store)

    answers = await asyncio.gather(
        *(store.finish_attempt(m.id, result(i), LATER) for i, m in enumerate(messages)),
        store.finish_attempt(messages[0].id, result(1), LATER),  # a second finish of one
        store.finish_attempt("msg_nobody", result(0), LATER),
        return_exceptions=True,
    )

    assert commits(store) - before < len(messages)  # they were written together
    assert isinstance(answers[-1], KeyError)
    assert answers[-2] == answers[0]  # the second finish answers the stored first one
    for number, (message, answer) in enumerate(zip(messages, answers, strict=False)):
        assert isinstance(answer, MessageRecord)
        assert answer == await store.get_message(APP, message.id)
        assert answer.sub_msg == f"answer {number}" and answer.lease_owner is None
    statuses = Counter(a.status for a in answers[:-2] if isinstance(a, MessageRecord))
    assert statuses == {MessageStatus.SENT: 8, MessageStatus.QUEUED: 8, MessageStatus.UNKNOWN: 8}
    assert await store.message_counts_of_app(APP) == await counted(store)
    updated = Counter((e.data or {})["message_id"] for e in await updates(store))
    assert updated == dict.fromkeys((m.id for m in messages), 1)
    for message in messages:
        [attempt] = await store.message_attempts(message.id)
        assert attempt.finished_at == LATER


async def test_an_outcome_finished_again_later_changes_nothing(store: Store) -> None:
    messages = await in_flight(store, 6)
    first = await asyncio.gather(
        *(store.finish_attempt(m.id, result(i), LATER) for i, m in enumerate(messages))
    )

    again = await asyncio.gather(
        *(store.finish_attempt(m.id, result(i + 1), LATER) for i, m in enumerate(messages))
    )

    assert again == first
    assert len(await updates(store)) == len(messages)


async def test_an_outcome_the_database_refuses_fails_alone(postgres_url: str) -> None:
    store = await open_store(postgres_url)
    try:
        messages = await in_flight(store, 8)
        refused = AttemptResult(outcome=AttemptOutcome.SENT, platform_msg="nul \x00 byte")
        before = commits(store)

        answers = await asyncio.gather(
            *(
                store.finish_attempt(m.id, refused if i == 3 else result(i), LATER)
                for i, m in enumerate(messages)
            ),
            return_exceptions=True,
        )

        assert commits(store) - before < len(messages)  # the batch was tried together
        assert isinstance(answers[3], StorageUnavailable)
        stored = [await store.get_message(APP, m.id) for m in messages]
        assert answers[:3] + answers[4:] == stored[:3] + stored[4:]
        assert stored[3] is not None and stored[3].status is MessageStatus.SENDING
        assert len(await updates(store)) == len(messages) - 1
        assert await store.message_counts_of_app(APP) == await counted(store)
    finally:
        await store.close()
