"""A reservation on PostgreSQL decided from one read and written by one statement
(``storage/postgres/reservations.py``): whatever lands between the read and the write, the
write holds only if every recipient's row is still the one read; otherwise nothing is written
and the send is decided again. Each test lets a real write land at that moment, on another
connection, and checks every answer against what is stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

import pytest

from storage import StorageUnavailable
from storage.errors import ConsentRequired, IdempotencyMismatch
from storage.ledger import fold
from storage.models import ConsentAction, ConsentState, ReserveOutcome, SendReservation
from storage.postgres import PostgresStore, sends
from storage.postgres.connection import Conn, Job, T, transact
from tests.storage.postgres_env import connect_admin
from tests.storage.records import APP, NOW, TEMPLATE, USER, accept, reservation

OTHER = "2088000000000002"
BeforeWrite = Callable[[Conn], Awaitable[None]]


class WriteDelayed:
    """A store connection whose next reservation writes (``reservations``' one statement) each
    wait until ``before_write`` has run: a racing request landing between read and write."""

    def __init__(self, connection: Conn, before_write: BeforeWrite, times: list[int]) -> None:
        self._connection, self._before_write, self._times = connection, before_write, times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        if sql.startswith("WITH x AS") and self._times[0] > 0:
            self._times[0] -= 1
            await self._before_write(self._connection)
        return await self._connection.fetchrow(sql, *args)


async def reserve(
    store: PostgresStore, r: SendReservation, before_write: BeforeWrite, times: int = 1
) -> ReserveOutcome:
    """``store.reserve_send(r, begin=True)``, its first ``times`` writes delayed."""
    left = [times]

    async def run(job: Job[T], *, atomic: bool = True) -> T:
        def delayed(connection: Conn) -> Awaitable[T]:
            return job(cast(Conn, WriteDelayed(connection, before_write, left)))

        return await transact(store.pool, delayed, retries=0, atomic=atomic)

    return await sends.reserve_send(store.pool, run, r, begin=True)


@pytest.fixture
def store(postgres_store: PostgresStore) -> PostgresStore:
    return postgres_store


async def given_credits(store: PostgresStore, n: int, user_id: str = USER) -> None:
    events = [accept(m, user_id=user_id) for m in range(n)]
    await store.append_consent_events(events, NOW + timedelta(minutes=n))


async def state_is_the_fold(store: PostgresStore, user_id: str = USER) -> ConsentState:
    [state] = await store.consent_states(APP, user_id, "mini_template", TEMPLATE)
    history = await store.consent_history(APP, user_id, "mini_template", TEMPLATE)
    assert state == fold(APP, user_id, "mini_template", TEMPLATE, [(e, e.id) for e in history])
    return state


async def spends_of(store: PostgresStore, user_id: str = USER) -> int:
    events = await store.consent_events(APP, user_id)
    return sum(e.action is ConsentAction.SPEND for e in events)


async def test_a_cancel_between_the_read_and_the_write_is_never_undone(
    store: PostgresStore,
) -> None:
    await given_credits(store, 1)
    cancel = accept(30).model_copy(update={"action": ConsentAction.CANCEL, "evidence": "c"})

    async def cancel_now(_: Conn) -> None:
        await store.append_consent_events([cancel], NOW + timedelta(minutes=30))

    with pytest.raises(ConsentRequired):
        await reserve(store, reservation("k-1"), cancel_now)

    state = await state_is_the_fold(store)
    assert (state.status.value, state.credits) == ("cancelled", 0)
    assert await spends_of(store) == 0
    assert await store.count_messages() == 0


async def test_a_credit_granted_between_the_read_and_the_write_is_decided_again(
    store: PostgresStore,
) -> None:
    await given_credits(store, 1)

    async def grant(_: Conn) -> None:
        await store.append_consent_events([accept(20)], NOW + timedelta(minutes=20))

    outcome = await reserve(store, reservation("k-1"), grant)

    assert not outcome.replayed and outcome.begun
    assert (await state_is_the_fold(store)).credits == 1  # two granted, one spent
    assert await spends_of(store) == 1


async def test_a_state_changed_under_every_unlocked_try_is_reserved_under_locks(
    store: PostgresStore,
) -> None:
    await given_credits(store, 1)
    granted = iter(range(20, 40))

    async def grant(_: Conn) -> None:
        minute = next(granted)
        await store.append_consent_events([accept(minute)], NOW + timedelta(minutes=minute))

    outcome = await reserve(store, reservation("k-1"), grant, times=sends.UNLOCKED_TRIES)

    stored = await store.get_message(APP, outcome.message.id)
    assert stored is not None and stored.status.value == "sending"
    assert (await state_is_the_fold(store)).credits == sends.UNLOCKED_TRIES  # 1 + tries - 1
    assert await spends_of(store) == 1


async def test_a_copy_of_the_request_committed_meanwhile_is_replayed_and_spends_once(
    store: PostgresStore,
) -> None:
    await given_credits(store, 2)
    first: list[ReserveOutcome] = []

    async def same_request(_: Conn) -> None:
        first.append(await store.reserve_send(reservation("k-1"), begin=True))

    outcome = await reserve(store, reservation("k-1"), same_request)

    assert outcome.replayed and outcome.message.id == first[0].message.id
    assert (await state_is_the_fold(store)).credits == 1
    assert await spends_of(store) == 1


async def test_a_key_taken_meanwhile_for_another_user_writes_nothing_for_this_one(
    store: PostgresStore,
) -> None:
    await given_credits(store, 1)
    await given_credits(store, 1, user_id=OTHER)

    async def take_the_key(_: Conn) -> None:
        await store.reserve_send(reservation("k-1", request="r-other", user_id=OTHER))

    with pytest.raises(IdempotencyMismatch):
        await reserve(store, reservation("k-1"), take_the_key)

    assert (await state_is_the_fold(store)).credits == 1
    assert await spends_of(store) == 0
    assert (await state_is_the_fold(store, OTHER)).credits == 0
    assert await store.count_messages() == 1


async def test_a_connection_lost_before_the_write_writes_nothing_and_a_retry_spends_once(
    store: PostgresStore, postgres_url: str
) -> None:
    await given_credits(store, 1)
    admin = await connect_admin(postgres_url)

    async def lose_the_connection(connection: Conn) -> None:
        await admin.execute("SELECT pg_terminate_backend($1)", connection.get_server_pid())

    try:
        with pytest.raises(StorageUnavailable):
            await reserve(store, reservation("k-1"), lose_the_connection)
        assert await store.count_messages() == 0
        assert await spends_of(store) == 0

        outcome = await store.reserve_send(reservation("k-1"), begin=True)
    finally:
        await admin.close()
    assert not outcome.replayed
    assert (await state_is_the_fold(store)).credits == 0
    assert await spends_of(store) == 1
