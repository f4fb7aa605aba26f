"""The group-commit writer: batching, per-job isolation, batch-wide failure, bulk writes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from storage import StorageUnavailable
from storage.sqlite import batch
from storage.sqlite.connection import SQLiteOptions, connect
from storage.sqlite.writer import GATHER_ITERATIONS, BulkWrite, SerialWriter


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[SerialWriter]:
    def open_with_table() -> sqlite3.Connection:
        connection = connect(SQLiteOptions(path=tmp_path / "w.db", busy_timeout_ms=100))
        connection.execute("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)")
        return connection

    writer = await SerialWriter.open(open_with_table)
    yield writer
    await writer.close()


def insert(value: int) -> Callable[[sqlite3.Connection], int]:
    def job(connection: sqlite3.Connection) -> int:
        connection.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return value

    return job


def count(connection: sqlite3.Connection) -> int:
    return int(connection.execute("SELECT count(*) FROM t").fetchone()[0])


async def assert_a_job_and_two_items_fail_together(
    writer: SerialWriter, bulk: BulkWrite[int, int]
) -> None:
    """A job and two items of ``bulk`` in one batch: every caller hears the store is
    unavailable, and nothing of the batch is stored."""
    results: tuple[object, ...] = await asyncio.gather(
        writer.run(insert(1)),
        writer.run_bulk(bulk, 2),
        writer.run_bulk(bulk, 3),
        return_exceptions=True,
    )

    assert all(isinstance(r, StorageUnavailable) for r in results)
    assert await writer.run(count) == 0


async def test_jobs_arriving_together_share_batches(writer: SerialWriter) -> None:
    results = await asyncio.gather(*(writer.run(insert(i)) for i in range(100)))

    assert results == list(range(100))
    assert await writer.run(count) == 100
    assert writer.batches < 100


async def test_jobs_reaching_the_writer_a_few_loop_iterations_apart_share_one_batch(
    writer: SerialWriter,
) -> None:
    """As requests do: each is read, then parsed and verified, before its write is asked for."""
    sizes: list[int] = []
    writer.observe = lambda _seconds, jobs: sizes.append(jobs)

    async def after(iterations: int, value: int) -> int:
        for _ in range(iterations):
            await asyncio.sleep(0)
        return await writer.run(insert(value))

    spread = GATHER_ITERATIONS - 1  # the last ones arrive just before the batch is taken
    results = await asyncio.gather(*(after(i % (spread + 1), i) for i in range(30)))

    assert results == list(range(30))
    assert sizes == [30]


async def test_a_failing_job_is_rolled_back_alone(writer: SerialWriter) -> None:
    def insert_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO t (v) VALUES (1000)")
        raise LookupError("domain refusal")

    results: tuple[object, ...] = await asyncio.gather(
        writer.run(insert(1)),
        writer.run(insert_then_fail),
        writer.run(insert(1)),  # constraint violation
        writer.run(insert(2)),
        return_exceptions=True,
    )

    assert results[0] == 1 and results[3] == 2
    assert isinstance(results[1], LookupError)
    assert isinstance(results[2], sqlite3.IntegrityError)
    assert await writer.run(count) == 2


async def test_single_statement_jobs_without_a_savepoint_fail_alone(writer: SerialWriter) -> None:
    """``isolated=False``: SQLite undoes the failed statement, the batch commits the rest."""
    results: tuple[object, ...] = await asyncio.gather(
        writer.run(insert(1), isolated=False),
        writer.run(insert(1), isolated=False),  # constraint violation
        writer.run(insert(2), isolated=False),
        return_exceptions=True,
    )

    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert await writer.run(count) == 2


async def test_a_job_without_a_savepoint_fails_alone_only_if_it_changed_nothing(
    writer: SerialWriter,
) -> None:
    def refuse_before_writing(connection: sqlite3.Connection) -> None:
        connection.execute("SELECT count(*) FROM t").fetchone()
        raise LookupError("refused before any write")

    def refuse_after_writing(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO t (v) VALUES (1000)")
        raise LookupError("a refusal after a write")

    alone: tuple[object, ...] = await asyncio.gather(
        writer.run(insert(1)),
        writer.run(refuse_before_writing, isolated=False),
        return_exceptions=True,
    )
    assert alone[0] == 1 and isinstance(alone[1], LookupError)
    assert await writer.run(count) == 1

    together: tuple[object, ...] = await asyncio.gather(
        writer.run(insert(2)),
        writer.run(refuse_after_writing, isolated=False),
        return_exceptions=True,
    )
    assert all(isinstance(r, StorageUnavailable) for r in together)
    assert await writer.run(count) == 1  # neither 2 nor 1000: the whole batch was undone


def broken(connection: sqlite3.Connection) -> None:
    connection.execute("INSERT INTO missing_table VALUES (1)")


@pytest.mark.parametrize("mode", ["savepoint", "bare"])
async def test_a_storage_error_fails_the_whole_batch(writer: SerialWriter, mode: str) -> None:
    failing = writer.run(broken, isolated=mode == "savepoint")

    results: tuple[object, ...] = await asyncio.gather(
        writer.run(insert(1)), failing, return_exceptions=True
    )

    assert all(isinstance(r, StorageUnavailable) for r in results)
    assert await writer.run(count) == 0


class InsertMany:
    """A bulk write into ``t``: one multi-row INSERT per call, each call's items recorded."""

    def __init__(self, max_items: int = 64, answer_short: bool = False) -> None:
        self.calls: list[list[int]] = []
        self._answer_short = answer_short
        self.bulk: BulkWrite[int, int] = BulkWrite("insert many", self.apply, max_items)

    def apply(self, connection: sqlite3.Connection, values: Sequence[int]) -> list[int]:
        self.calls.append(list(values))
        rows = ", ".join("(?)" for _ in values)
        connection.execute(f"INSERT INTO t (v) VALUES {rows}", list(values))  # noqa: S608
        return list(values)[1:] if self._answer_short else [v * 10 for v in values]


async def test_bulk_items_share_one_call_per_chunk(writer: SerialWriter) -> None:
    many = InsertMany(max_items=8)

    results = await asyncio.gather(*(writer.run_bulk(many.bulk, i) for i in range(100)))

    assert results == [i * 10 for i in range(100)]
    assert sorted(v for call in many.calls for v in call) == list(range(100))
    assert max(len(call) for call in many.calls) == 8
    assert len(many.calls) < 100 // 4
    assert await writer.run(count) == 100


async def test_a_refused_bulk_item_fails_alone_and_the_rest_commit(writer: SerialWriter) -> None:
    many = InsertMany()

    results: list[object] = list(
        await asyncio.gather(
            *(writer.run_bulk(many.bulk, v) for v in (1, 2, 1, 3)), return_exceptions=True
        )
    )

    assert [results[0], results[1], results[3]] == [10, 20, 30]
    assert isinstance(results[2], sqlite3.IntegrityError)
    assert many.calls[0] == [1, 2, 1, 3]  # together first, then one by one
    assert await writer.run(count) == 3


async def test_bulk_items_and_jobs_commit_in_one_batch(writer: SerialWriter) -> None:
    many = InsertMany()

    results = await asyncio.gather(
        writer.run(insert(1)), writer.run_bulk(many.bulk, 2), writer.run(insert(3))
    )

    assert list(results) == [1, 20, 3]
    assert writer.batches == 1
    assert await writer.run(count) == 3


@pytest.mark.parametrize("fault", ["storage error", "wrong number of results"])
async def test_a_broken_bulk_write_fails_the_whole_batch(writer: SerialWriter, fault: str) -> None:
    def apply(connection: sqlite3.Connection, values: Sequence[int]) -> list[int]:
        broken(connection)
        return list(values)

    bulk = (
        BulkWrite("broken", apply)
        if fault == "storage error"
        else InsertMany(answer_short=True).bulk
    )

    await assert_a_job_and_two_items_fail_together(writer, bulk)


async def test_a_bulk_write_that_fails_after_writing_leaves_nothing_and_retries_alone(
    writer: SerialWriter,
) -> None:
    """The chunk runs in a savepoint: what it wrote before failing is undone, so the items
    written again one by one are new, not duplicates of a half-kept chunk."""

    def insert_then_trip(connection: sqlite3.Connection, values: Sequence[int]) -> list[int]:
        rows = ", ".join("(?)" for _ in values)
        connection.execute(f"INSERT INTO t (v) VALUES {rows}", list(values))  # noqa: S608
        if len(values) > 1:
            raise LookupError("a bug after the write")
        return list(values)

    bulk = BulkWrite("insert then trip", insert_then_trip)

    results = await asyncio.gather(*(writer.run_bulk(bulk, v) for v in (1, 2, 3)))

    assert list(results) == [1, 2, 3]
    assert await writer.run(count) == 3


def insert_or_ignore(connection: sqlite3.Connection, values: Sequence[int]) -> list[int]:
    """An idempotent one-statement bulk write."""
    rows = ", ".join("(?)" for _ in values)
    connection.execute(f"INSERT OR IGNORE INTO t (v) VALUES {rows}", list(values))  # noqa: S608
    return list(values)


def insert_or_ignore_then_trip(connection: sqlite3.Connection, values: Sequence[int]) -> list[int]:
    insert_or_ignore(connection, values)
    raise LookupError("a bug after the write")


async def test_a_batch_that_is_one_chunk_of_a_one_write_is_its_statement_alone(
    writer: SerialWriter, tmp_path: Path
) -> None:
    """No BEGIN, no savepoint, no COMMIT: SQLite commits the one statement by itself."""
    bulk = BulkWrite("insert or ignore", insert_or_ignore, one_write=True)
    statements: list[str] = []
    await writer.maintain(lambda connection: connection.set_trace_callback(statements.append))

    results = await asyncio.gather(*(writer.run_bulk(bulk, v) for v in (1, 2, 3)))

    assert list(results) == [1, 2, 3]
    assert statements == ["INSERT OR IGNORE INTO t (v) VALUES (1), (2), (3)"]
    with sqlite3.connect(tmp_path / "w.db") as other:  # committed: another connection sees it
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 3


async def test_a_transaction_left_open_never_turns_a_one_statement_batch_into_a_false_success(
    writer: SerialWriter, tmp_path: Path
) -> None:
    """A statement inside a transaction someone left open would not commit: the batch goes the
    usual way instead, whose BEGIN fails loudly, and the writer recovers after its rollback."""
    bulk = BulkWrite("insert or ignore", insert_or_ignore, one_write=True)
    await writer.maintain(lambda connection: connection.execute("BEGIN"))

    with pytest.raises(StorageUnavailable):
        await writer.run_bulk(bulk, 1)

    assert await writer.run_bulk(bulk, 2) == 2
    with sqlite3.connect(tmp_path / "w.db") as other:
        assert other.execute("SELECT v FROM t").fetchall() == [(2,)]


async def test_a_one_write_bulk_refused_by_sqlite_is_written_again_item_by_item(
    writer: SerialWriter,
) -> None:
    """SQLite undoes the refused statement itself; the batch then goes the usual way, in a
    transaction, where the items are written one by one and only the one at fault fails."""
    many = InsertMany()
    bulk = BulkWrite("insert many", many.apply, one_write=True)
    statements: list[str] = []
    await writer.maintain(lambda connection: connection.set_trace_callback(statements.append))

    results: list[object] = list(
        await asyncio.gather(*(writer.run_bulk(bulk, v) for v in (1, 2, 1)), return_exceptions=True)
    )

    assert results[:2] == [10, 20] and isinstance(results[2], sqlite3.IntegrityError)
    assert await writer.run(count) == 2
    together = "INSERT INTO t (v) VALUES (1), (2), (1)"
    assert statements[:3] == [together, "BEGIN IMMEDIATE", together]  # no savepoint around it


async def test_a_one_write_bulk_that_fails_after_writing_beside_other_jobs_fails_the_batch(
    writer: SerialWriter,
) -> None:
    """In a transaction, without a savepoint, its write cannot be undone alone: nothing of the
    batch may commit."""
    bulk = BulkWrite("insert then trip", insert_or_ignore_then_trip, one_write=True)

    await assert_a_job_and_two_items_fail_together(writer, bulk)


async def test_a_one_write_batch_that_fails_after_its_statement_committed_is_told_to_retry(
    writer: SerialWriter,
) -> None:
    """Alone, its statement commits by itself: the callers hear the store is unavailable although
    their items are stored, and retrying them (idempotent) finds them stored."""
    tripping = BulkWrite("insert then trip", insert_or_ignore_then_trip, one_write=True)
    retried = BulkWrite("insert or ignore", insert_or_ignore, one_write=True)

    results = await asyncio.gather(
        *(writer.run_bulk(tripping, v) for v in (1, 2)), return_exceptions=True
    )
    assert all(isinstance(r, StorageUnavailable) for r in results)
    assert await writer.run(count) == 2

    assert list(await asyncio.gather(*(writer.run_bulk(retried, v) for v in (1, 2)))) == [1, 2]
    assert await writer.run(count) == 2


async def test_a_bug_outside_any_job_fails_the_batch_and_the_writer_goes_on(
    writer: SerialWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_apply_all(connection: sqlite3.Connection, batch: object) -> object:
        connection.execute("INSERT INTO t (v) VALUES (99)")
        raise TypeError("a bug in the writer itself")

    monkeypatch.setattr(batch, "_apply_all", broken_apply_all)
    with pytest.raises(StorageUnavailable):
        await writer.run(insert(1))
    monkeypatch.undo()

    assert await writer.run(insert(2)) == 2
    assert await writer.run(count) == 1
