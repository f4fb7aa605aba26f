"""Notifications written together (one group commit) on both stores: every answer matches what
is stored, each stored notification has its one ``notification.received`` event, and the consent
events of a notification are applied once, whatever else is in its batch."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Sequence
from urllib.parse import urlsplit

import pytest

from storage import Store, open_store
from storage.models import ConsentEvent, RecordOutcome
from storage.postgres import PostgresStore
from storage.sqlite import SQLiteStore
from tests.storage.conftest import StoreFactory
from tests.storage.event_log import log
from tests.storage.pg_commit_proxy import CommitProxy, Moment, through_proxy
from tests.storage.postgres_env import connect_admin
from tests.storage.records import APP, follow, notification

Answer = RecordOutcome | BaseException


def batches(store: Store) -> int:
    """How many batches the store has committed (or failed) so far."""
    if isinstance(store, SQLiteStore):
        return store.writer.batches
    assert isinstance(store, PostgresStore)
    return store.batches.group.batches


async def arrive(
    store: Store, keys: Sequence[str], events: dict[str, list[ConsentEvent]] | None = None
) -> list[Answer]:
    """``keys`` arriving together (one event-loop iteration), each with its events, if any."""
    events = events or {}
    return await asyncio.gather(
        *(store.record_notification(notification(k), events.get(k, [])) for k in keys),
        return_exceptions=True,
    )


async def assert_answers_match_the_store(
    stores: Sequence[Store],
    keys: Sequence[str],
    answers: Sequence[Answer],
    stored_before: frozenset[str] = frozenset(),
) -> None:
    """Each stored key was answered with its row's id, new exactly once; a refused key is not
    stored; every stored notification has exactly one ``notification.received`` event."""
    new: dict[str, int] = {}
    for key, answer in zip(keys, answers, strict=True):
        row = await stores[0].get_notification(APP, key)
        if isinstance(answer, BaseException):
            assert row is None, f"{key} failed but is stored"
            continue
        assert row is not None and answer.notification_id == row.id, key
        if not answer.duplicate:
            new[key] = new.get(key, 0) + 1
    stored = {k for k, a in zip(keys, answers, strict=True) if not isinstance(a, BaseException)}
    assert new == dict.fromkeys(stored - stored_before, 1)
    for store in stores:
        assert await store.count_notifications() == len(stored | stored_before)
    received = [e.notification.id for e in await log(stores[0]) if e.notification is not None]
    assert sorted(received) == sorted({a.notification_id for a in _outcomes(answers)})


def _ok(answer: Answer) -> bool:
    return not isinstance(answer, BaseException)


def _outcomes(answers: Sequence[Answer]) -> list[RecordOutcome]:
    return [answer for answer in answers if isinstance(answer, RecordOutcome)]


async def test_a_batch_with_a_repeated_key_stores_it_once(store: Store) -> None:
    await store.record_notification(notification("stored-before"))
    before = batches(store)
    keys = ["a", "b", "a", "stored-before", "c", "b", "a"]

    answers = await arrive(store, keys, {"a": [follow()]})

    assert batches(store) - before < len(keys)  # they were written together
    await assert_answers_match_the_store([store], keys, answers, frozenset({"stored-before"}))
    assert [a.duplicate for a in _outcomes(answers)] == [
        False,
        False,
        True,
        True,
        False,
        True,
        True,
    ]
    assert len(await store.consent_events(APP)) == 1  # the follow, applied once


async def test_a_row_the_database_refuses_fails_alone(store: Store, store_url: str) -> None:
    await refuse_key(store, store_url, "refused")
    keys = ["n-1", "refused", "n-2", "n-3"]

    answers = await arrive(
        store, keys, {"n-2": [follow()], "refused": [follow("2088000000000002")]}
    )

    assert [isinstance(answer, BaseException) for answer in answers] == [False, True, False, False]
    await assert_answers_match_the_store([store], keys, answers)
    assert [event.user_id for event in await store.consent_events(APP)] == ["2088000000000001"]


async def test_two_replicas_racing_on_one_key_store_it_once(store_factory: StoreFactory) -> None:
    one, other = await store_factory(), await store_factory()
    keys = ["same"] * 20 + [f"n-{i}" for i in range(10)] * 2

    answers = await asyncio.gather(
        *(
            (one if i % 2 else other).record_notification(notification(k), [follow()])
            for i, k in enumerate(keys)
        ),
        return_exceptions=True,
    )

    assert all(_ok(answer) for answer in answers), answers
    await assert_answers_match_the_store([one, other], keys, answers)
    assert len(await one.consent_events(APP)) == 11  # one follow per stored notification


async def refuse_key(store: Store, store_url: str, dedupe_key: str) -> None:
    """Make the database itself refuse a notification with ``dedupe_key``."""
    if isinstance(store, SQLiteStore):
        connection = sqlite3.connect(urlsplit(store_url).path, timeout=5)
        with connection:
            connection.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON notifications "
                f"WHEN NEW.dedupe_key = '{dedupe_key}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        connection.close()
        return
    admin = await connect_admin(store_url)
    try:
        await admin.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation'; END $$"
        )
        await admin.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON notifications FOR EACH ROW "
            f"WHEN (NEW.dedupe_key = '{dedupe_key}') EXECUTE FUNCTION refuse()"
        )
    finally:
        await admin.close()


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_batch_whose_connection_is_ended_mid_batch_is_written_again(
    store_factory: StoreFactory, store_url: str
) -> None:
    """The batch waits on a key another transaction holds; its server process is ended from
    another connection. Nothing of the batch was committed, so each is written again alone."""
    name = f"batch-{secrets.token_hex(4)}"  # to find this test's connections among the server's
    store = await open_store(f"{store_url}&application_name={name}")
    admin = await connect_admin(store_url)
    try:
        holder = admin.transaction()
        await holder.start()
        await admin.execute(
            "INSERT INTO notifications (app_id, dedupe_key, kind, handler, raw_body, charset, "
            "sign_type, rule, key_label, received_at) "
            "VALUES ($1, 'held', 'k', 'h', ''::bytea, 'utf-8', 'RSA2', 'V1', 'k', 0)",
            APP,
        )
        keys = [f"n-{i}" for i in range(5)] + ["held"]
        answering = asyncio.ensure_future(arrive(store, keys, {"n-2": [follow()]}))
        ended = await end_the_waiting_backend(store_url, name)
        await holder.rollback()
        answers = await answering
    finally:
        await admin.close()
        await store.close()
    store = await store_factory()

    assert ended
    assert all(_ok(answer) for answer in answers), answers
    await assert_answers_match_the_store([store], keys, answers)
    assert len(await store.consent_events(APP)) == 1


async def end_the_waiting_backend(store_url: str, application_name: str) -> bool:
    """End the store's server process waiting for a lock on notifications (its batch)."""
    other = await connect_admin(store_url)
    try:
        for _ in range(3000):
            ended = await other.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type "
                "= 'Lock' AND query LIKE 'INSERT INTO notifications%' AND application_name = $1",
                application_name,
            )
            if ended:
                return True
            await asyncio.sleep(0.01)  # polls for the batch to reach the held key
        return False
    finally:
        await other.close()


@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize("moment", ["before", "after"])
async def test_a_batch_whose_commit_is_lost_is_answered_from_what_landed(
    store_factory: StoreFactory, store_url: str, moment: Moment
) -> None:
    """The connection is lost as the batch's COMMIT goes out (nothing landed: each is written
    again alone) or once the server has committed it (each is answered from the store)."""
    upstream = urlsplit(store_url)
    proxy = CommitProxy(upstream.hostname or "", upstream.port or 5432, b"INSERT INTO notif")
    await proxy.start()
    keys = [f"n-{i}" for i in range(6)] + ["n-1"]
    try:
        store = await open_store(through_proxy(store_url, proxy.port))
        try:
            proxy.arm(moment)
            answers = await arrive(store, keys, {"n-3": [follow()]})
        finally:
            await store.close()
    finally:
        await proxy.close()

    assert proxy.dropped == 1
    assert all(_ok(answer) for answer in answers), answers
    await assert_answers_match_the_store([await store_factory()], keys, answers)
    assert len(await (await store_factory()).consent_events(APP)) == 1
