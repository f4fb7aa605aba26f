"""The group-commit writer: batching, per-job isolation, batch-wide failure."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from storage import StorageUnavailable
from storage.sqlite.connection import SQLiteOptions, connect
from storage.sqlite.writer import SerialWriter


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


async def test_jobs_arriving_together_share_batches(writer: SerialWriter) -> None:
    results = await asyncio.gather(*(writer.run(insert(i)) for i in range(100)))

    assert results == list(range(100))
    assert await writer.run(count) == 100
    assert writer.batches < 100


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


def insert_many(connection: sqlite3.Connection, values: list[int]) -> list[int]:
    """A bulk writer that refuses negative values, as a domain check would."""
    if any(value < 0 for value in values):
        raise ValueError("negative")
    connection.executemany("INSERT INTO t (v) VALUES (?)", [(value,) for value in values])
    return values


async def test_bulk_writes_of_a_batch_are_applied_together(writer: SerialWriter) -> None:
    calls: list[list[int]] = []

    def recording(connection: sqlite3.Connection, values: list[int]) -> list[int]:
        calls.append(list(values))
        return insert_many(connection, values)

    results = await asyncio.gather(*(writer.run_bulk(recording, i) for i in range(20)))

    assert results == list(range(20))
    assert sum(len(call) for call in calls) == 20 and len(calls) < 20
    assert await writer.run(count) == 20


@pytest.mark.parametrize("bad", [-1, 1], ids=["domain-refusal", "constraint-violation"])
async def test_a_bad_bulk_item_fails_alone(writer: SerialWriter, bad: int) -> None:
    results: tuple[object, ...] = await asyncio.gather(
        writer.run_bulk(insert_many, 1),
        writer.run_bulk(insert_many, bad),  # -1 is refused; 1 again violates UNIQUE
        writer.run_bulk(insert_many, 2),
        writer.run(insert(3)),
        return_exceptions=True,
    )

    assert (results[0], results[2], results[3]) == (1, 2, 3)
    assert isinstance(results[1], ValueError if bad < 0 else sqlite3.IntegrityError)
    assert await writer.run(count) == 3


def broken(connection: sqlite3.Connection) -> None:
    connection.execute("INSERT INTO missing_table VALUES (1)")


def broken_many(connection: sqlite3.Connection, values: list[int]) -> list[int]:
    broken(connection)
    return values


@pytest.mark.parametrize("mode", ["savepoint", "bare", "bulk"])
async def test_a_storage_error_fails_the_whole_batch(writer: SerialWriter, mode: str) -> None:
    failing: Awaitable[object]
    if mode == "savepoint":
        failing = writer.run(broken)
    elif mode == "bare":
        failing = writer.run(broken, isolated=False)
    else:
        failing = writer.run_bulk(broken_many, 2)

    results: tuple[object, ...] = await asyncio.gather(
        writer.run(insert(1)), failing, return_exceptions=True
    )

    assert all(isinstance(r, StorageUnavailable) for r in results)
    assert await writer.run(count) == 0
