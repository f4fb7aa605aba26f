"""SQLite-only behaviour of the store: another process holding the database's write lock; the
single-key read made on the event loop's thread; notifications written in bulk; memory-mapped
reads."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import StorageUnavailable, Store, open_store
from storage.sqlite.connection import SQLiteOptions, connect_point_reader
from storage.sqlite.store import SQLiteStore
from tests.storage.records import APP, NOW, TEMPLATE, USER, accept, notification


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'subgate.db'}", busy_timeout_ms=200)
    yield store
    await store.close()


async def test_locked_database_refuses_then_recovers(sqlite_store: Store, tmp_path: Path) -> None:
    blocker = sqlite3.connect(tmp_path / "subgate.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable):
            await sqlite_store.record_notification(notification("while-locked"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    outcome = await sqlite_store.record_notification(notification("while-locked"))

    assert not outcome.duplicate
    assert await sqlite_store.count_notifications() == 1


async def test_a_single_key_read_is_answered_on_the_loop_thread_and_matches_the_reader(
    sqlite_store: Store,
) -> None:
    await sqlite_store.append_consent_events([accept(1), accept(2)], NOW)
    assert isinstance(sqlite_store, SQLiteStore)
    on_the_loop: list[str] = []
    sqlite_store._point_reads.connection.set_trace_callback(on_the_loop.append)

    [state] = await sqlite_store.consent_states(APP, USER, "mini_template", TEMPLATE)
    everything = await sqlite_store.consent_states(APP, USER)  # all of a user's: reader thread

    assert everything == [state]
    assert state.credits == 2
    assert len(on_the_loop) == 1 and "AND template_id = 'T-one-time'" in on_the_loop[0]


async def test_a_single_key_read_that_fails_otherwise_than_busy_is_an_error_not_a_retry(
    sqlite_store: Store, tmp_path: Path
) -> None:
    assert isinstance(sqlite_store, SQLiteStore)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    sqlite_store._point_reads.connection.close()
    sqlite_store._point_reads.connection = connect_point_reader(SQLiteOptions(empty))

    with pytest.raises(StorageUnavailable, match="no such table"):
        await sqlite_store.consent_states(APP, USER, "mini_template", TEMPLATE)


async def test_a_single_key_read_that_finds_a_lock_goes_to_the_reader_thread(
    sqlite_store: Store, tmp_path: Path
) -> None:
    assert isinstance(sqlite_store, SQLiteStore)
    # The loop thread's connection now reads a copy of the database (taken before the credit
    # below, in rollback-journal mode) that another connection holds exclusively: it is
    # refused at once (busy_timeout 0), where the reader thread would wait.
    locked = tmp_path / "locked.db"
    with sqlite3.connect(tmp_path / "subgate.db") as source, sqlite3.connect(locked) as copy:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
    await sqlite_store.append_consent_events([accept(1)], NOW)
    point_reader = connect_point_reader(SQLiteOptions(locked))
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        point_reader.execute("SELECT count(*) FROM consents").fetchall()
    sqlite_store._point_reads.connection.close()
    sqlite_store._point_reads.connection = point_reader
    try:
        [state] = await sqlite_store.consent_states(APP, USER, "mini_template", TEMPLATE)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert (state.user_id, state.credits) == (USER, 1)  # the copy has no credit: the reader's


async def test_a_batch_of_notifications_takes_the_same_few_statements_however_large(
    sqlite_store: Store,
) -> None:
    """Every statement step releases the GIL and the writer must win it back from the event
    loop: a chunk of new notifications is one insert, with no read and no savepoint, and a batch
    of one chunk is that insert alone."""
    assert isinstance(sqlite_store, SQLiteStore)
    writer = sqlite_store.writer
    statements: list[str] = []
    sizes: list[int] = []
    await writer.maintain(lambda connection: connection.set_trace_callback(statements.append))
    writer.observe = lambda seconds, jobs: sizes.append(jobs)

    outcomes = await asyncio.gather(
        *(sqlite_store.record_notification(notification(f"n-{i}")) for i in range(200))
    )
    await writer.maintain(lambda connection: connection.set_trace_callback(None))

    # The trace repeats a statement's text for each step of a trigger it fires (each new
    # notification's event): those steps run inside the statement's own step, not apart.
    statements = [sql for i, sql in enumerate(statements) if i == 0 or sql != statements[i - 1]]
    inserts = [sql for sql in statements if sql.startswith("INSERT INTO notifications")]
    chunks = sum(-(-size // 64) for size in sizes)
    several = sum(1 for size in sizes if size > 64)
    assert len(sizes) < 20 and several >= 1
    assert len(inserts) == chunks  # one per chunk of at most 64
    # BEGIN and COMMIT only for the batches of several chunks: nothing per row.
    assert len(statements) == len(inserts) + 2 * several
    assert statements.count("BEGIN IMMEDIATE") == statements.count("COMMIT") == several
    assert sorted(o.notification_id for o in outcomes) == list(range(1, 201))
    assert not any(o.duplicate for o in outcomes)


async def test_ids_are_read_back_when_sqlite_does_not_number_rows_in_order(
    sqlite_store: Store,
) -> None:
    """With the largest rowid taken, SQLite picks new rowids at random: the ids that a batch's
    notifications get are then read back instead of counted on."""
    assert isinstance(sqlite_store, SQLiteStore)
    await sqlite_store.record_notification(notification("first"))
    await sqlite_store.writer.run(
        lambda connection: connection.execute(
            "UPDATE notifications SET id = 9223372036854775807 WHERE dedupe_key = 'first'"
        )
    )

    keys = [f"n-{i}" for i in range(10)] + ["first", "n-3"]
    outcomes = await asyncio.gather(
        *(sqlite_store.record_notification(notification(key)) for key in keys)
    )

    for key, outcome in zip(keys, outcomes, strict=True):
        stored = await sqlite_store.get_notification(APP, key)
        assert stored is not None and outcome.notification_id == stored.id
    assert [o.duplicate for o in outcomes] == [False] * 10 + [True, True]


async def test_a_chunk_of_retries_writes_nothing_and_answers_the_stored_ids(
    sqlite_store: Store,
) -> None:
    keys = [f"n-{i}" for i in range(5)]
    first = await asyncio.gather(
        *(sqlite_store.record_notification(notification(key)) for key in keys)
    )

    again = await asyncio.gather(
        *(sqlite_store.record_notification(notification(key)) for key in [*keys, "n-9"])
    )

    assert [o.notification_id for o in again[:5]] == [o.notification_id for o in first]
    assert [o.duplicate for o in again] == [True] * 5 + [False]
    stored = await sqlite_store.get_notification(APP, "n-9")
    assert stored is not None and again[5].notification_id == stored.id
    assert await sqlite_store.count_notifications() == 6


@pytest.mark.parametrize(("read_mmap_mb", "mapped"), [(0, 0), (64, 64 * 1024 * 1024)])
async def test_only_the_read_connections_map_the_file(
    tmp_path: Path, read_mmap_mb: int, mapped: int
) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'mapped.db'}", read_mmap_mb=read_mmap_mb)
    assert isinstance(store, SQLiteStore)
    try:
        on_the_loop = store._point_reads.connection.execute("PRAGMA mmap_size").fetchone()[0]
        [[reader]] = await store._reader.execute_fetchall("PRAGMA mmap_size", ())
        [[reader_wait]] = await store._reader.execute_fetchall("PRAGMA busy_timeout", ())
        writer = await store.writer.maintain(
            lambda connection: connection.execute("PRAGMA mmap_size").fetchone()[0]
        )
    finally:
        await store.close()

    assert (on_the_loop, reader, writer) == (mapped, mapped, 0)
    assert reader_wait == 5000  # the store's busy_timeout_ms, as every read waits


async def test_chunks_of_a_large_batch_keep_ids_and_duplicates_and_a_bad_row_fails_alone(
    sqlite_store: Store,
) -> None:
    """130 notifications in one batch: three chunks, a key repeated across the 64 boundary,
    keys stored before, and one row SQLite refuses (retried one by one, it fails alone)."""
    stored = await sqlite_store.record_notification(notification("old"))
    keys = [f"n-{i}" for i in range(130)]
    keys[64] = keys[63]
    keys[100] = "old"
    bad = notification("bad").model_construct(**{**notification("bad").__dict__, "kind": None})

    outcomes = await asyncio.gather(
        *(sqlite_store.record_notification(notification(key)) for key in keys),
        sqlite_store.record_notification(bad),
        return_exceptions=True,
    )

    *recorded, refused = outcomes
    assert isinstance(refused, sqlite3.IntegrityError)
    for index, (key, outcome) in enumerate(zip(keys, recorded, strict=True)):
        assert not isinstance(outcome, BaseException)
        row = await sqlite_store.get_notification(APP, key)
        assert row is not None and outcome.notification_id == row.id
        assert outcome.duplicate == (index in (64, 100)), key
    assert recorded[100].notification_id == stored.notification_id  # type: ignore[union-attr]
    assert await sqlite_store.count_notifications() == 129


async def test_ids_counted_from_the_last_rowid_are_the_notifications_not_their_events(
    sqlite_store: Store,
) -> None:
    """Each row of a chunk's one insert fires a trigger that inserts its event: the ids the
    chunk answers, counted from the last rowid, must be the notifications' own (the events are
    numbered apart, one ahead here), and each new notification has exactly one event."""
    assert isinstance(sqlite_store, SQLiteStore)
    writer = sqlite_store.writer
    sizes: list[int] = []
    await sqlite_store.append_consent_events([accept(1)], NOW)  # event 1: no notification
    await sqlite_store.record_notification(notification("before"))
    writer.observe = lambda seconds, jobs: sizes.append(jobs)
    keys = [f"n-{i}" for i in range(150)]
    keys[70], keys[140], keys[149] = keys[10], keys[139], "before"

    outcomes = await asyncio.gather(
        *(sqlite_store.record_notification(notification(key)) for key in keys)
    )

    assert any(size > 64 for size in sizes)  # several chunks in one batch
    rows = await writer.maintain(
        lambda connection: connection.execute("SELECT dedupe_key, id FROM notifications").fetchall()
    )
    stored = dict(rows)
    assert [o.notification_id for o in outcomes] == [stored[key] for key in keys]
    assert [o.duplicate for o in outcomes].count(False) == 147
    events = await writer.maintain(
        lambda connection: connection.execute(
            "SELECT id, notification_id FROM events WHERE notification_id IS NOT NULL ORDER BY id"
        ).fetchall()
    )
    assert [n for _, n in events] == sorted(stored.values())
    assert [e for e, _ in events] == [n + 1 for n in sorted(stored.values())]
