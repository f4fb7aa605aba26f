"""Send reservations decided and written together on PostgreSQL
(``storage/postgres/reservation_batches.py``): each keeps its own condition and its own answer.
Reservations sharing a user's key in one batch are decided one after the other; a state changed
under one of them, a row the database refuses, or a batch whose answer is lost after its commit
never costs the others, none is ever answered as new twice, and every answer is what is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

import asyncpg
import pytest

from storage import StorageUnavailable
from storage.errors import ConsentRequired
from storage.ledger import fold
from storage.models import ConsentAction, ReserveOutcome, SendReservation
from storage.postgres import PostgresStore, sends
from storage.postgres.connection import Conn, Job, T, transact
from storage.postgres.reservation_batches import ReservationBatches
from tests.storage.records import APP, NOW, TEMPLATE, accept, reservation

USERS = [f"20880000000001{n:02d}" for n in range(8)]
AtWrite = Callable[[Conn, Callable[[], Awaitable[Any]]], Awaitable[Any]]


class AtBatchWrite:
    """A connection whose reservation writes (``WITH x AS ...``: a batch's ``fetch``, one
    reservation's ``fetchrow``) go through ``at_write``, which runs the write when it wants to
    (or never), each counted with the reservations it writes."""

    def __init__(self, connection: Conn, at_write: AtWrite, writes: list[int]) -> None:
        self._connection, self._at_write, self._writes = connection, at_write, writes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    async def fetch(self, sql: str, *args: Any) -> Any:
        if not sql.startswith("WITH x AS"):
            return await self._connection.fetch(sql, *args)
        self._writes.append(len(args[-1]))  # the reservations it writes
        return await self._at_write(self._connection, lambda: self._connection.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        if not sql.startswith("WITH x AS"):
            return await self._connection.fetchrow(sql, *args)
        self._writes.append(1)
        return await self._at_write(self._connection, lambda: self._connection.fetchrow(sql, *args))


class Batches(ReservationBatches):
    """The store's batching, its batch writes handed to ``at_write``."""

    def __init__(self, store: PostgresStore, at_write: AtWrite) -> None:
        super().__init__(store.pool, retries=0)
        self.writes: list[int] = []
        self._at_write = at_write

    async def run(self, job: Job[T], items: int, *, atomic: bool = True) -> T:
        def wrapped(connection: Conn) -> Awaitable[T]:
            return job(cast(Conn, AtBatchWrite(connection, self._at_write, self.writes)))

        return await transact(self._pool, wrapped, retries=0, atomic=atomic)


def send_to(user_id: str) -> SendReservation:
    """A send to ``user_id`` under a key of its own."""
    return reservation(f"k-{user_id}", request=f"r-{user_id}", user_id=user_id)


async def reserve_all(
    store: PostgresStore, batches: ReservationBatches, wanted: list[SendReservation]
) -> list[ReserveOutcome | BaseException]:
    async def one(r: SendReservation) -> ReserveOutcome:
        return await sends.reserve_send(store.pool, store._transact, r, begin=True, batches=batches)

    return list(await asyncio.gather(*(one(r) for r in wanted), return_exceptions=True))


@pytest.fixture
def store(postgres_store: PostgresStore) -> PostgresStore:
    return postgres_store


async def given_credits(store: PostgresStore, user_id: str, n: int = 1) -> None:
    events = [accept(m, user_id=user_id) for m in range(n)]
    await store.append_consent_events(events, NOW + timedelta(minutes=n))


async def credits_and_spends(store: PostgresStore, user_id: str) -> tuple[int, int]:
    """The key's credits (checked equal to the fold of its history) and its spends."""
    [state] = await store.consent_states(APP, user_id, "mini_template", TEMPLATE)
    history = await store.consent_history(APP, user_id, "mini_template", TEMPLATE)
    assert state == fold(APP, user_id, "mini_template", TEMPLATE, [(e, e.id) for e in history])
    return state.credits, sum(e.action is ConsentAction.SPEND for e in history)


async def assert_stored(store: PostgresStore, answers: list[Any]) -> None:
    for answer in answers:
        if isinstance(answer, ReserveOutcome):
            assert await store.get_message(APP, answer.message.id) == answer.message


async def as_is(_: Conn, write: Callable[[], Awaitable[Any]]) -> Any:
    return await write()


async def test_reservations_arriving_together_are_one_read_and_one_write(
    store: PostgresStore,
) -> None:
    for user in USERS:
        await given_credits(store, user)
    batches = Batches(store, as_is)

    answers = await reserve_all(store, batches, [send_to(u) for u in USERS])

    assert batches.writes == [len(USERS)]
    assert all(isinstance(a, ReserveOutcome) and not a.replayed for a in answers), answers
    await assert_stored(store, answers)
    for user in USERS:
        assert await credits_and_spends(store, user) == (0, 1)


async def test_reservations_of_one_users_key_in_a_batch_are_decided_one_after_another(
    store: PostgresStore,
) -> None:
    await given_credits(store, USERS[0], n=2)
    batches = Batches(store, as_is)
    wanted = [reservation(f"k-{n}", request=f"r-{n}", user_id=USERS[0]) for n in range(3)]

    answers = await reserve_all(store, batches, wanted)

    assert batches.group.batches == 1  # one batch, its later rounds reading the earlier's writes
    assert [type(a) for a in answers].count(ReserveOutcome) == 2
    assert [type(a) for a in answers].count(ConsentRequired) == 1
    await assert_stored(store, answers)
    assert await credits_and_spends(store, USERS[0]) == (0, 2)
    assert await store.count_messages() == 2


async def test_a_state_changed_under_one_reservation_fails_only_it_and_it_is_decided_again(
    store: PostgresStore,
) -> None:
    for user in USERS[:3]:
        await given_credits(store, user)
    granted = [False]

    async def grant_first_user(_: Conn, write: Callable[[], Awaitable[Any]]) -> Any:
        if not granted[0]:  # a report lands between the batch's read and its write
            granted[0] = True
            await store.append_consent_events(
                [accept(30, user_id=USERS[0])], NOW + timedelta(minutes=30)
            )
        return await write()

    batches = Batches(store, grant_first_user)
    answers = await reserve_all(store, batches, [send_to(u) for u in USERS[:3]])

    assert batches.writes == [3, 1]  # the others written at once, the first user's again alone
    assert all(isinstance(a, ReserveOutcome) and not a.replayed for a in answers), answers
    await assert_stored(store, answers)
    assert await credits_and_spends(store, USERS[0]) == (1, 1)  # two granted, one spent
    for user in USERS[1:3]:
        assert await credits_and_spends(store, user) == (0, 1)


async def test_a_reservation_the_database_refuses_fails_alone(store: PostgresStore) -> None:
    for user in USERS[:4]:
        await given_credits(store, user)
    wanted = [send_to(u) for u in USERS[:4]]
    wanted[2] = wanted[2].model_copy(update={"payload": '{"nul": "\x00"}'})
    batches = Batches(store, as_is)

    answers = await reserve_all(store, batches, wanted)

    assert batches.writes == [4, 1, 1, 1, 1]  # tried together, then each alone
    assert isinstance(answers[2], StorageUnavailable)
    assert all(isinstance(a, ReserveOutcome) and not a.replayed for a in answers[:2] + answers[3:])
    await assert_stored(store, answers)
    assert await credits_and_spends(store, USERS[2]) == (1, 0)
    assert await store.get_message(APP, wanted[2].message_id) is None
    assert await store.count_messages() == 3


async def test_a_batch_whose_answer_is_lost_after_its_commit_is_answered_as_replays(
    store: PostgresStore,
) -> None:
    for user in USERS[:3]:
        await given_credits(store, user)
    wanted = [send_to(u) for u in USERS[:3]]
    lost = [False]

    async def lose_the_batchs_answer(_: Conn, write: Callable[[], Awaitable[Any]]) -> Any:
        answer = await write()  # committed: one statement, no transaction around it
        if lost[0]:
            return answer
        lost[0] = True
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost")

    batches = Batches(store, lose_the_batchs_answer)
    answers = await reserve_all(store, batches, wanted)

    assert batches.writes == [3]  # each alone then found its message: nothing more written
    for r, answer in zip(wanted, answers, strict=True):
        # A replay, as the retry after a lone reservation's 503 would be: never sent twice.
        assert isinstance(answer, ReserveOutcome), answer
        assert answer.message.id == r.message_id and answer.replayed
    await assert_stored(store, answers)
    for user in USERS[:3]:
        assert await credits_and_spends(store, user) == (0, 1)  # spent once
