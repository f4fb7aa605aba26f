"""The PostgreSQL benchmarks' own database: created at the start, dropped at the end.

The server is ``$SUBGATE_BENCH_POSTGRES_URL`` (default: the local server the tests use,
``postgresql://postgres@127.0.0.1:5432/postgres``); the role needs CREATEDB. Each measured
Subgate gets a fresh schema in that database (``fresh_schema``), as each SQLite target gets a
fresh file.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

SERVER_ENV = "SUBGATE_BENCH_POSTGRES_URL"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SCHEMA = "subgate"
STORES = ("sqlite", "postgres")  # the order of each round


def server_url() -> str:
    return os.environ.get(SERVER_ENV, "").strip() or DEFAULT_SERVER


def with_database(url: str, database: str, schema: str | None = None) -> str:
    """``url`` naming ``database`` (and, if given, working in ``schema``)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    if schema is not None:
        query.append(("search_path", schema))
    return urlunsplit(parts._replace(path=f"/{database}", query=urlencode(query)))


@contextmanager
def bench_database() -> Iterator[str]:
    """A new database for this run (its URL); dropped afterwards, whatever happened."""
    server = server_url()
    name = f"subgate_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server, name)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fresh_schema(database_url: str) -> str:
    """Empty the bench schema (dropping what an earlier run left) and return its URL."""
    asyncio.run(
        _admin(database_url, f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE", f"CREATE SCHEMA {SCHEMA}")
    )
    return with_database(database_url, urlsplit(database_url).path.lstrip("/"), SCHEMA)


def fetch_value(schema_url: str, sql: str) -> Any:
    """One value read from the bench schema."""
    return asyncio.run(_value(schema_url, sql))


async def _admin(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _value(url: str, sql: str) -> Any:
    search_path = dict(parse_qsl(urlsplit(url).query)).get("search_path", "public")
    connection = await asyncpg.connect(
        with_database(url, urlsplit(url).path.lstrip("/")),
        timeout=10,
        server_settings={"search_path": search_path},
    )
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


def alternating_rounds(
    workdir: Path, database: str, rounds: int, measure: Callable[[Path, str | None], Any]
) -> dict[str, list[Any]]:
    """``measure`` on SQLite, then on a fresh PostgreSQL schema (its URL given; ``None`` for
    SQLite), each in a directory of its own, ``rounds`` times: each store's results in order."""
    runs: dict[str, list[Any]] = {store: [] for store in STORES}
    for number in range(rounds):
        for store in STORES:
            run_dir = workdir / f"{store}-{number}"
            run_dir.mkdir(parents=True)
            schema = fresh_schema(database) if store == "postgres" else None
            runs[store].append(measure(run_dir, schema))
    return runs
