"""The writer keeps its savepoints' sub-journals in memory: no temporary file per commit."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from storage.sqlite.connection import SQLiteOptions, open_connections

ROWS = 2_000  # about 100 pages of 4 KiB: well past the buffer SQLite spills to a file


def temporary_files_open() -> list[str]:
    """SQLite's temporary files this process holds (created, then unlinked at once)."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # closed since it was listed (the listing's own, for one)
            continue
    return [link for link in links if "etilqs_" in link]


def fill(connection: sqlite3.Connection) -> None:
    connection.execute("CREATE TABLE IF NOT EXISTS wide (id INTEGER PRIMARY KEY, v TEXT)")
    connection.executemany("INSERT INTO wide (v) VALUES (?)", [("a" * 200,)] * ROWS)


def rewrite_and_look(connection: sqlite3.Connection) -> list[str]:
    """Changes again, inside this job's savepoint, every page the job before it changed."""
    connection.execute("UPDATE wide SET v = ?", ("b" * 200,))
    return temporary_files_open()


async def test_a_batch_of_jobs_rewriting_each_others_pages_opens_no_temporary_file(
    tmp_path: Path,
) -> None:
    writer, reader, point_reader = await open_connections(SQLiteOptions(tmp_path / "s.db"))
    try:
        filled, seen = await asyncio.gather(writer.run(fill), writer.run(rewrite_and_look))
        temp_store = await writer.run(lambda c: c.execute("PRAGMA temp_store").fetchone()[0])
    finally:
        point_reader.close()
        await reader.close()
        await writer.close()

    assert filled is None
    assert seen == []
    assert temp_store == 2  # MEMORY
