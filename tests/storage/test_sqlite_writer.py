"""The group-commit writer: batching, per-job isolation, batch-wide failure."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
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
