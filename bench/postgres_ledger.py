"""The benchmarks' cached SQLite ledgers, copied into a PostgreSQL schema (and results back).

The lookups and sends benchmarks build a ledger once as a SQLite file (``bench/ledger_fill.py``).
The PostgreSQL runs start from the same ledger: Subgate migrates a fresh schema, then its
``consents`` and ``consent_events`` rows are copied in with COPY, triggers off (the events those
rows once caused are not part of a ledger), and each identity is moved past the copied ids. After
a sends run, the rows the books read are copied back into a SQLite copy of the ledger, so that
``bench/sends.py`` keeps its books one way for both stores.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import asyncpg

from storage import open_store

LEDGER_TABLES = ("consent_events", "consents")
BOOK_TABLES = ("messages", "consent_events", "consents")
_CHUNK = 50_000


def to_postgres(ledger: Path, schema_url: str) -> int:
    """Migrate the schema at ``schema_url`` and copy the ledger into it; rows copied."""
    return asyncio.run(_to_postgres(f"{ledger.resolve().as_uri()}?mode=ro", schema_url))


def to_sqlite(schema_url: str, database: Path) -> None:
    """Replace the book tables' rows in the SQLite file ``database`` with the schema's."""
    asyncio.run(_to_sqlite(schema_url, database))


async def _to_postgres(source_uri: str, schema_url: str) -> int:
    store = await open_store(schema_url)  # migrates
    await store.close()
    connection = await _connect(schema_url)
    copied = 0
    try:
        await connection.execute("SET session_replication_role = replica")  # no triggers
        source = sqlite3.connect(source_uri, uri=True)
        try:
            for table in LEDGER_TABLES:
                copied += await _copy_in(connection, source, table)
        finally:
            source.close()
        # The copied tables only: the others stay as a new store leaves them, never analysed
        # (autovacuum first analyses a table once 50 of its rows changed). Analysed while empty,
        # a table is planned as one of a few pages until its next ANALYZE, and a connection
        # keeps the plan it made then: a lookup by key planned as a scan of the whole table.
        await connection.execute(f"ANALYZE {', '.join(LEDGER_TABLES)}")
    finally:
        await connection.close()
    return copied


async def _copy_in(
    connection: asyncpg.Connection[asyncpg.Record], source: sqlite3.Connection, table: str
) -> int:
    types = await _column_types(connection, table)
    names = [name for name, _ in types]
    flags = [kind == "boolean" for _, kind in types]
    cursor = source.execute(f"SELECT {', '.join(names)} FROM {table}")  # noqa: S608
    copied = 0
    for chunk in _chunks(cursor):
        records = [tuple(_cast(v, b) for v, b in zip(row, flags, strict=True)) for row in chunk]
        await connection.copy_records_to_table(table, records=records, columns=names)
        copied += len(records)
    if "id" in names:
        move_past = f"(SELECT coalesce(max(id), 0) + 1 FROM {table})"  # noqa: S608
        await connection.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {move_past}, false)"
        )
    return copied


async def _to_sqlite(schema_url: str, database: Path) -> None:
    connection = await _connect(schema_url)
    target = sqlite3.connect(database)
    try:
        for (name,) in target.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            target.execute(f'DROP TRIGGER "{name}"')
        for table in BOOK_TABLES:
            here = {row[1] for row in target.execute(f"PRAGMA table_info({table})")}
            names = [n for n, _ in await _column_types(connection, table) if n in here]
            target.execute(f"DELETE FROM {table}")  # noqa: S608
            rows = await connection.fetch(f"SELECT {', '.join(names)} FROM {table}")  # noqa: S608
            marks = ", ".join("?" * len(names))
            target.executemany(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",  # noqa: S608
                [tuple(row) for row in rows],
            )
        target.commit()
    finally:
        target.close()
        await connection.close()


async def _column_types(
    connection: asyncpg.Connection[asyncpg.Record], table: str
) -> list[tuple[str, str]]:
    rows = await connection.fetch(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return [(row[0], row[1]) for row in rows]


async def _connect(schema_url: str) -> asyncpg.Connection[asyncpg.Record]:
    parts = urlsplit(schema_url)
    schema = dict(parse_qsl(parts.query)).get("search_path", "public")
    plain = parts._replace(query="").geturl()
    return await asyncpg.connect(plain, timeout=10, server_settings={"search_path": schema})


def _chunks(cursor: sqlite3.Cursor) -> Iterator[list[Any]]:
    while rows := cursor.fetchmany(_CHUNK):
        yield rows


def _cast(value: Any, boolean: bool) -> Any:
    return bool(value) if boolean and value is not None else value
