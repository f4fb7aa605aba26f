"""Subscribe reports committed together on PostgreSQL (``storage/postgres/report_batches.py``):
one transaction per batch, every report's events appended in one statement when each key gets
one, and each report answered as if alone. A repeated key, a user reporting twice, a late event,
a report the database refuses and a batch whose answer is lost after its COMMIT each keep that
promise, and every answer is what is stored."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Sequence
from datetime import timedelta
from typing import Any, cast

import asyncpg
import pytest

from storage import StorageUnavailable
from storage.ledger import fold
from storage.models import (
    ConsentAction,
    ConsentEvent,
    ConsentState,
    EventType,
    ReportOutcome,
    SubscribeReport,
)
from storage.postgres import PostgresStore
from storage.postgres.connection import Conn, Job, T, transact
from storage.postgres.report_batches import ReportBatches
from tests.storage.event_log import log
from tests.storage.records import APP, NOW, TEMPLATE, accept

USERS = [f"20880000000002{n:02d}" for n in range(6)]


def report(user_id: str, key: str = "", body: str = '{"accept":["T-one-time"]}') -> SubscribeReport:
    return SubscribeReport(
        app_id=APP,
        user_id=user_id,
        idempotency_key=key or f"report-{user_id}",
        body_sha256=hashlib.sha256(body.encode()).hexdigest(),
        body=body,
        received_at=NOW + timedelta(minutes=10),
    )


def answer(report_id: int, states: list[ConsentState]) -> str:
    return json.dumps({"report_id": report_id, "credits": [s.credits for s in states]})


class Counting:
    """A connection that counts the batch statements run on it: the batch's insert of reports,
    a lone report's insert, and the statement that appends several events at once."""

    def __init__(self, connection: Conn, seen: list[str]) -> None:
        self._connection, self._seen = connection, seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    async def fetch(self, sql: str, *args: Any) -> Any:
        if sql.startswith("INSERT INTO subscribe_reports"):
            self._seen.append(f"batch of {len(args[0])}")
        return await self._connection.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        if sql.startswith("INSERT INTO subscribe_reports"):
            self._seen.append("alone")
        return await self._connection.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("WITH spent AS"):
            self._seen.append(f"{len(args[0])} events in one statement")
        return await self._connection.execute(sql, *args)


class Batches(ReportBatches):
    """The store's batching on its pool, its statements counted; ``lose_first_answer``: the
    first batch commits and its answer is then lost (the connection's error)."""

    def __init__(self, store: PostgresStore, lose_first_answer: bool = False) -> None:
        super().__init__(store.pool, retries=0)
        self.seen: list[str] = []
        self._lose = lose_first_answer

    async def run(self, job: Job[T], items: int, *, atomic: bool = True) -> T:
        def counted(connection: Conn) -> Awaitable[T]:
            return job(cast(Conn, Counting(connection, self.seen)))

        done = await transact(self._pool, counted, retries=0, atomic=atomic)
        if self._lose and items > 1:
            self._lose = False
            raise StorageUnavailable("connection lost") from asyncpg.ConnectionDoesNotExistError()
        return done


async def record_all(
    batches: ReportBatches, reports: Sequence[tuple[SubscribeReport, list[ConsentEvent]]]
) -> list[ReportOutcome | BaseException]:
    return list(
        await asyncio.gather(
            *(batches.record(r, events, answer) for r, events in reports),
            return_exceptions=True,
        )
    )


@pytest.fixture
def store(postgres_store: PostgresStore) -> PostgresStore:
    return postgres_store


async def state_is_the_fold(store: PostgresStore, user_id: str) -> ConsentState:
    [state] = await store.consent_states(APP, user_id, "mini_template", TEMPLATE)
    history = await store.consent_history(APP, user_id, "mini_template", TEMPLATE)
    assert state == fold(APP, user_id, "mini_template", TEMPLATE, [(e, e.id) for e in history])
    return state


async def consent_changes(store: PostgresStore) -> int:
    return sum(e.type is EventType.CONSENT_CHANGED for e in await log(store))


async def test_reports_arriving_together_are_one_transaction_and_one_append(
    store: PostgresStore,
) -> None:
    batches = Batches(store)
    wanted = [(report(u), [accept(1, user_id=u)]) for u in USERS]

    answers = await record_all(batches, wanted)

    assert batches.seen == [f"batch of {len(USERS)}", f"{len(USERS)} events in one statement"]
    for (sent, _), got in zip(wanted, answers, strict=True):
        assert isinstance(got, ReportOutcome) and not got.replayed, got
        assert json.loads(got.outcome) == {"report_id": got.report_id, "credits": [1]}
        again = await store.record_subscribe_report(sent, [], answer)  # the stored answer
        assert (again.report_id, again.outcome) == (got.report_id, got.outcome)
    for user in USERS:
        assert (await state_is_the_fold(store, user)).credits == 1
    assert await consent_changes(store) == len(USERS)


async def test_a_repeated_key_in_a_batch_is_a_replay_of_its_first_report_or_a_conflict(
    store: PostgresStore,
) -> None:
    batches = Batches(store)
    user = USERS[0]
    first = (report(user), [accept(1, user_id=user)])
    copy = (report(user), [accept(1, user_id=user)])
    other_body = (report(user, body='{"accept":[]}'), [accept(2, user_id=user, evidence="x")])

    answers = await record_all(batches, [first, copy, other_body, (report(USERS[1]), [])])

    assert batches.seen == ["batch of 2", "1 events in one statement"]
    got, again, conflict = (cast(ReportOutcome, a) for a in answers[:3])
    assert (got.replayed, again.replayed, again.conflict) == (False, True, False)
    assert (conflict.replayed, conflict.conflict) == (True, True)
    assert got.report_id == again.report_id == conflict.report_id
    assert got.outcome == again.outcome == conflict.outcome
    assert (await state_is_the_fold(store, user)).credits == 1


async def test_a_user_reporting_twice_in_a_batch_gets_each_event_in_order(
    store: PostgresStore,
) -> None:
    batches = Batches(store)
    user = USERS[0]
    wanted = [(report(user, key=f"r-{n}"), [accept(n, user_id=user)]) for n in (1, 2)]

    answers = await record_all(batches, wanted)

    assert batches.seen == ["batch of 2"]  # one event at a time: the key twice
    assert [json.loads(cast(ReportOutcome, a).outcome)["credits"] for a in answers] == [[1], [2]]
    assert (await state_is_the_fold(store, user)).credits == 2
    assert await consent_changes(store) == 2


async def test_a_late_event_in_a_batch_is_folded_into_its_keys_history(
    store: PostgresStore,
) -> None:
    user = USERS[0]
    cancel = accept(30, user_id=user).model_copy(
        update={"action": ConsentAction.CANCEL, "evidence": "c"}
    )
    await store.append_consent_events([accept(20, user_id=user), cancel], NOW)
    batches = Batches(store)
    late = (report(user), [accept(1, user_id=user)])  # before the cancel: it stays cancelled

    answers = await record_all(batches, [late, (report(USERS[1]), [accept(1, user_id=USERS[1])])])

    assert batches.seen == ["batch of 2"]  # one event at a time: one is late
    assert all(isinstance(a, ReportOutcome) and not a.replayed for a in answers), answers
    state = await state_is_the_fold(store, user)
    assert (state.status.value, state.credits) == ("cancelled", 0)
    assert (await state_is_the_fold(store, USERS[1])).credits == 1


async def test_a_report_the_database_refuses_fails_alone(store: PostgresStore) -> None:
    batches = Batches(store)
    wanted = [(report(u), [accept(1, user_id=u)]) for u in USERS[:4]]
    wanted[2] = (report(USERS[2], body='{"nul": "\x00"}'), wanted[2][1])

    answers = await record_all(batches, wanted)

    assert batches.seen == ["batch of 4"] + ["alone"] * 4  # tried together, then each alone
    assert isinstance(answers[2], StorageUnavailable)
    assert all(isinstance(a, ReportOutcome) and not a.replayed for a in answers[:2] + answers[3:])
    assert (await state_is_the_fold(store, USERS[3])).credits == 1
    assert await store.consent_states(APP, USERS[2], "mini_template", TEMPLATE) == []


async def test_a_batch_whose_answer_is_lost_after_its_commit_answers_each_its_own(
    store: PostgresStore,
) -> None:
    batches = Batches(store, lose_first_answer=True)
    wanted = [(report(u), [accept(1, user_id=u)]) for u in USERS[:3]]
    repeat = (report(USERS[0]), [accept(1, user_id=USERS[0])])

    answers = await record_all(batches, [*wanted, repeat])

    assert batches.seen[:2] == ["batch of 3", "3 events in one statement"]
    assert [cast(ReportOutcome, a).replayed for a in answers] == [False, False, False, True]
    for user in USERS[:3]:
        assert (await state_is_the_fold(store, user)).credits == 1  # applied once
    assert await consent_changes(store) == 3


async def test_reports_without_events_write_no_ledger_statement(store: PostgresStore) -> None:
    batches = Batches(store)

    answers = await record_all(batches, [(report(u), []) for u in USERS[:3]])

    assert batches.seen == ["batch of 3"]  # no lock, no append: nothing to apply
    assert all(isinstance(a, ReportOutcome) and not a.replayed for a in answers), answers
    assert await consent_changes(store) == 0
