"""Send reservations arriving together (one group commit on SQLite; on PostgreSQL concurrent
transactions, bench/README.md says why): a refused one fails alone, a repeated key reserves
once, and two replicas racing on one user's credits spend each credit once. Every answer
matches what is stored."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from storage import Store
from storage.errors import ConsentRequired
from storage.models import ConsentAction, ReserveOutcome
from storage.sqlite import SQLiteStore
from tests.storage.conftest import StoreFactory
from tests.storage.records import APP, NOW, TEMPLATE, USER, accept, reservation

OTHER = "2088000000000002"  # a user without any credit


async def test_a_refused_reservation_fails_alone_and_a_repeated_key_reserves_once(
    store: Store,
) -> None:
    await store.append_consent_events([accept(m) for m in range(3)], NOW + timedelta(minutes=3))
    wanted = [reservation(f"k-{i}", request=f"r-{i}") for i in range(3)]
    repeated = reservation("k-1", request="r-1")
    refused = reservation("k-other", user_id=OTHER)
    before = store.writer.batches if isinstance(store, SQLiteStore) else 0

    answers = await asyncio.gather(
        *(store.reserve_send(r) for r in [*wanted, refused, repeated]), return_exceptions=True
    )

    if isinstance(store, SQLiteStore):  # on PostgreSQL each is a transaction of its own
        assert store.writer.batches - before < 5  # they were written together
    assert isinstance(answers[3], ConsentRequired)
    outcomes = [a for a in answers if isinstance(a, ReserveOutcome)]
    assert len(outcomes) == 4
    assert outcomes[1].message.id == outcomes[3].message.id  # the repeat answers the first
    assert [o.replayed for o in outcomes].count(True) == 1
    for outcome in outcomes:
        stored = await store.get_message(APP, outcome.message.id)
        assert stored is not None and stored.idempotency_key == outcome.message.idempotency_key
    [state] = await store.consent_states(APP, USER, "mini_template", TEMPLATE)
    assert state.credits == 0
    assert await store.get_message(APP, refused.message_id) is None


async def test_two_replicas_racing_on_one_users_credits_spend_each_once(
    store_factory: StoreFactory,
) -> None:
    one, other = await store_factory(), await store_factory()
    await one.append_consent_events([accept(m) for m in range(5)], NOW + timedelta(minutes=5))
    attempts = [reservation(f"k-{i % 12}", request=f"r-{i % 12}") for i in range(24)]

    answers = await asyncio.gather(
        *((one if i % 2 else other).reserve_send(r) for i, r in enumerate(attempts)),
        return_exceptions=True,
    )

    won = {a.message.idempotency_key for a in answers if isinstance(a, ReserveOutcome)}
    assert len(won) == 5, answers
    assert all(isinstance(a, ReserveOutcome | ConsentRequired) for a in answers), answers
    for key in won:
        [message_id] = {
            a.message.id for a in answers if isinstance(a, ReserveOutcome) and _for_key(a, key)
        }
        stored = await other.get_message(APP, message_id)
        assert stored is not None and stored.idempotency_key == key
    history = await one.consent_history(APP, USER, "mini_template", TEMPLATE)
    spends = Counter(e.evidence for e in history if e.action is ConsentAction.SPEND)
    assert len(spends) == 5 and set(spends.values()) == {1}
    [state] = await other.consent_states(APP, USER, "mini_template", TEMPLATE)
    assert state.credits == 0


def _for_key(answer: ReserveOutcome, key: str) -> bool:
    return answer.message.idempotency_key == key


async def test_copies_of_a_request_under_one_message_id_reserve_once(store: Store) -> None:
    # The server derives a message's id from its idempotency key (server/sending/sender.py), so
    # every copy of a request names the same message: one is new, each other copy a replay.
    await store.append_consent_events([accept(m) for m in range(3)], NOW + timedelta(minutes=3))
    firsts = [reservation(f"k-{i}", request=f"r-{i}") for i in range(3)]
    copies = [r.model_copy() for r in firsts for _ in range(3)]

    answers = await asyncio.gather(*(store.reserve_send(r, begin=True) for r in copies))

    new = Counter(a.message.idempotency_key for a in answers if not a.replayed)
    assert new == {r.idempotency_key: 1 for r in firsts}, answers
    assert {a.message.id for a in answers} == {r.message_id for r in firsts}
    history = await store.consent_history(APP, USER, "mini_template", TEMPLATE)
    assert sum(e.action is ConsentAction.SPEND for e in history) == 3
