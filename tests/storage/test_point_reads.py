"""The single-key reads of one turn of the event loop are read together, in one read
transaction at the turn's end (``storage.sqlite.point_reads``): each still gets its own key's
answer, a lone read is its statement alone, a read that fails fails its own key, and no read
transaction is left open."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import StorageUnavailable, open_store
from storage.models import ConsentSummary
from storage.sqlite.connection import SQLiteOptions, connect_point_reader
from storage.sqlite.store import SQLiteStore
from tests.storage.records import APP, NOW, TEMPLATE, accept

USERS = ("u1", "u2", "u3")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """Users ``u1``, ``u2``, ``u3`` holding one, two and three credits."""
    opened = await open_store(f"sqlite:///{tmp_path / 'subgate.db'}", busy_timeout_ms=200)
    assert isinstance(opened, SQLiteStore)
    events = [accept(n, user_id=user) for n, user in enumerate(USERS, 1) for _ in range(n)]
    await opened.append_consent_events(events, NOW)
    yield opened
    await opened.close()


def traced(store: SQLiteStore) -> list[str]:
    statements: list[str] = []
    store._point_reads.connection.set_trace_callback(statements.append)
    return statements


async def summary(store: SQLiteStore, user: str) -> ConsentSummary | None:
    return await store.consent_summary(APP, user, "mini_template", TEMPLATE)


async def test_the_keys_of_one_turn_are_read_in_one_read_transaction(
    store: SQLiteStore,
) -> None:
    statements = traced(store)

    answers = await asyncio.gather(*(summary(store, user) for user in (*USERS, "nobody")))

    assert [a.credits if a else None for a in answers] == [1, 2, 3, None]
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
    assert len(statements) == 2 + 4
    assert not store._point_reads.connection.in_transaction


async def test_a_lone_key_is_its_statement_alone(store: SQLiteStore) -> None:
    statements = traced(store)

    answer = await summary(store, "u2")

    assert answer is not None and answer.credits == 2
    assert len(statements) == 1 and statements[0].startswith("SELECT")


async def test_each_turn_reads_what_was_committed_before_it(store: SQLiteStore) -> None:
    before = await asyncio.gather(summary(store, "u1"), summary(store, "u2"))
    await store.append_consent_events([accept(9, user_id="u1")], NOW)

    after = await asyncio.gather(summary(store, "u1"), summary(store, "u2"))

    assert [a.credits for a in before if a] == [1, 2]
    assert [a.credits for a in after if a] == [2, 2]


async def test_refused_reads_fail_each_key_of_the_turn_and_leave_no_transaction(
    store: SQLiteStore, tmp_path: Path
) -> None:
    working = store._point_reads.connection
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    store._point_reads.connection = connect_point_reader(SQLiteOptions(empty))

    answers = await asyncio.gather(
        *(summary(store, user) for user in USERS), return_exceptions=True
    )

    assert all(isinstance(a, StorageUnavailable) and "no such table" in str(a) for a in answers)
    assert not store._point_reads.connection.in_transaction
    store._point_reads.connection.close()
    store._point_reads.connection = working
    assert [a.credits for a in await asyncio.gather(*(summary(store, u) for u in USERS)) if a] == [
        1,
        2,
        3,
    ]


async def test_busy_sends_every_key_of_the_turn_to_the_reader_thread(
    store: SQLiteStore, tmp_path: Path
) -> None:
    # The loop thread's connection now reads a copy of the store without its consents
    # (rollback-journal mode) that another connection holds exclusively: refused at once, where
    # the reader thread reads the store itself.
    locked = tmp_path / "locked.db"
    with sqlite3.connect(tmp_path / "subgate.db") as source, sqlite3.connect(locked) as copy:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
        copy.execute("DELETE FROM consents")
    store._point_reads.connection.close()
    store._point_reads.connection = connect_point_reader(SQLiteOptions(locked))
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        answers = await asyncio.gather(*(summary(store, user) for user in USERS))
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert [a.credits for a in answers if a] == [1, 2, 3]
    assert not store._point_reads.connection.in_transaction


async def test_a_key_that_cannot_be_read_fails_alone(store: SQLiteStore) -> None:
    """A user id that cannot be encoded (a lone surrogate) fails its own read, not the turn's."""
    answers = await asyncio.gather(
        summary(store, "u1"),
        summary(store, "\ud800"),
        summary(store, "u3"),
        return_exceptions=True,
    )

    assert isinstance(answers[1], UnicodeEncodeError)
    assert [a.credits for a in (answers[0], answers[2]) if isinstance(a, ConsentSummary)] == [1, 3]
    assert not store._point_reads.connection.in_transaction


async def test_a_key_given_up_before_its_turn_ends_does_not_hold_up_the_others(
    store: SQLiteStore,
) -> None:
    statements = traced(store)
    first, given_up, last = (asyncio.create_task(summary(store, user)) for user in USERS)
    await asyncio.sleep(0)  # each task has asked for its key
    given_up.cancel()

    answers = await asyncio.gather(first, last)

    assert [a.credits for a in answers if a] == [1, 3]
    assert given_up.cancelled()
    assert sum(s.startswith("SELECT") for s in statements) == 2
