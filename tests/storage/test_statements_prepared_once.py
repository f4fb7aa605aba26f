"""SQLite prepares each shared statement once: running it again with other values runs the
prepared program, it does not parse and plan the text again.

SQLite re-prepares a statement whose plan may depend on a bound value: a ``LIKE`` pattern, or a
value compared with a column that a partial index's WHERE compares with a literal
(``storage/sql/dialect.py``, ``BOUND_TEXT``). The one-key reads of the ledger were such
statements, and re-preparing them cost more than the read. An authorizer is called while a
statement is prepared and never while it runs, so its calls count the preparations.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

import storage.sqlite
from storage.sql.dialect import POSTGRES, SQLITE
from storage.sql.ledger import STATE_COLUMNS
from storage.sql.statements import statements_for
from storage.sqlite.connection import SQLiteOptions, connect
from storage.sqlite.migrate import apply_migrations
from tests.storage.pg_plans import ledger_grown_past_its_statistics, rows_examined, watched_plans
from tests.storage.records import APP, TEMPLATE, USER

# Planned for their bound pattern by design: a LIKE with a constant prefix reads an index range.
PLANNED_FOR_THEIR_VALUES = {"console.notifications", "console.notifications_of_kind"}
RUNS = 3
VALUES = ("mini_template", "life_account", "pending", "dead", "2088000000000001")

STATEMENT = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b")
KEY_COLUMNS = ("app_id", "user_id", "channel", "template_id")
KEY_PLAN = (
    "SEARCH consents USING PRIMARY KEY (app_id=? AND user_id=? AND channel=? AND template_id=?)"
)


def shared_statements() -> Iterator[tuple[str, str]]:
    """Every shared statement as SQLite runs it, named ``group.name``."""
    statements = statements_for(SQLITE)
    for group in fields(statements):
        texts = getattr(statements, group.name)
        for text in fields(texts):
            yield f"{group.name}.{text.name}", getattr(texts, text.name)


def sqlite_statements() -> Iterator[tuple[str, str]]:
    """The SQLite store's own statements (module constants of ``storage.sqlite``, not the
    templates its functions fill in), named ``module.NAME``."""
    for module in pkgutil.iter_modules(storage.sqlite.__path__):
        loaded = importlib.import_module(f"storage.sqlite.{module.name}")
        for name, value in vars(loaded).items():
            if isinstance(value, str) and STATEMENT.match(value) and "{" not in value:
                yield f"{module.name}.{name}", value


@pytest.fixture
def migrated(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = connect(SQLiteOptions(tmp_path / "subgate.db"))
    apply_migrations(connection)
    yield connection
    connection.close()


def preparations(connection: sqlite3.Connection, name: str, sql: str) -> list[int]:
    """How many authorizer calls each of ``RUNS`` runs of ``sql`` made, each run with other
    values and undone (a value of the wrong type may refuse a run: it was prepared first)."""
    calls: Counter[int] = Counter()
    run = 0

    def authorizer(*_: object) -> int:
        calls[run] += 1
        return sqlite3.SQLITE_OK

    connection.set_authorizer(authorizer)  # expires what is prepared: run 0 prepares anew
    try:
        for run in range(RUNS):
            values = [VALUES[(run + i) % len(VALUES)] for i in range(sql.count("?"))]
            connection.execute("SAVEPOINT run")
            with contextlib.suppress(sqlite3.Error):
                connection.execute(sql, values).fetchall()
            connection.execute("ROLLBACK TO run")
            connection.execute("RELEASE run")
    finally:
        connection.set_authorizer(None)
    assert calls[0] > 0, f"{name} was not prepared at all"
    return [calls[run] for run in range(RUNS)]


def test_no_shared_statement_is_prepared_again_for_new_values(
    migrated: sqlite3.Connection,
) -> None:
    prepared_again = {
        name for name, sql in shared_statements() if any(preparations(migrated, name, sql)[1:])
    }

    assert prepared_again == PLANNED_FOR_THEIR_VALUES


def test_no_statement_of_the_sqlite_store_is_prepared_again_for_new_values(
    migrated: sqlite3.Connection,
) -> None:
    statements = dict(sqlite_statements())
    assert len(statements) >= 10  # the deliveries', the outbox's, ...: the search found them

    prepared_again = {
        name for name, sql in statements.items() if any(preparations(migrated, name, sql)[1:])
    }

    assert prepared_again == set()


def test_a_bare_channel_would_be_prepared_on_every_run(migrated: sqlite3.Connection) -> None:
    """The cause, kept in view: the same key read with ``channel = ?``."""
    cast = statements_for(SQLITE).ledger.summary_of_key
    bare = cast.replace("CAST(? AS TEXT)", "?")
    assert bare != cast

    assert all(preparations(migrated, "bare", bare))
    assert not any(preparations(migrated, "cast", cast)[1:])


@pytest.mark.parametrize("name", ["summary_of_key", "state_of_key"])
def test_a_key_read_is_still_a_search_of_the_primary_key(
    migrated: sqlite3.Connection, name: str
) -> None:
    sql = getattr(statements_for(SQLITE).ledger, name)
    key = ("2021004100000000", "2088000000000001", "mini_template", "TPL1")

    plan = [row[3] for row in migrated.execute(f"EXPLAIN QUERY PLAN {sql}", key)]

    assert plan == [KEY_PLAN]


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("name", ["summary_of_key", "state_of_key"])
async def test_postgres_reads_a_key_through_its_primary_key_with_the_cast(
    postgres_url: str, name: str, generic: bool
) -> None:
    """The cast is for SQLite; PostgreSQL folds it into the parameter and still reads the one
    row through an index on the whole key (the primary key or ``consents_by_template``, which
    holds the same four columns), planned for the values or once for any."""
    sql = getattr(statements_for(POSTGRES).ledger, name)
    assert "CAST($3 AS TEXT)" in sql
    columns = STATE_COLUMNS.split(", ")
    async with ledger_grown_past_its_statistics(postgres_url, "consents", columns) as connection:
        plans_of = watched_plans(connection, "FROM consents", generic=generic)
        async with plans_of as plans:
            rows = await connection.fetch(sql, APP, USER, "mini_template", TEMPLATE)

    assert len(rows) == 1
    [plan] = plans
    condition = re.search(r"Index Cond: \((.*)\)", plan)
    assert "Index Scan using" in plan and condition is not None, plan
    assert all(f"{column} = " in condition.group(1) for column in KEY_COLUMNS), plan
    assert rows_examined(plan, "consents") == 1, plan
