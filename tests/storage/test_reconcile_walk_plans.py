"""The reconciliation walk's reads are ranges of the open mini-program keys' partial index, on
both stores: a take reads the rows it answers with, not every consent of the ledger (as the old
"least recently changed first" grouped them all). On PostgreSQL the read is watched through
``auto_explain`` on a ledger grown past its statistics, planned for its values and as a generic
plan, and after an ANALYZE that sees it grown."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import open_store
from storage.postgres.connection import Conn
from storage.sql.dialect import POSTGRES, SQLITE
from storage.sql.ledger import STATE_COLUMNS
from storage.sql.reconcile import ReconcileStatements
from storage.sql.statements import statements_for
from tests.storage.pg_plans import pooled_connection, rows_examined, watched_plans
from tests.storage.records import APP, NOW, accept

INDEX = "consents_open_mini_program"
USERS = 20_000  # grown keys, one in OPEN_EVERY of them open
OPEN_EVERY = 100
TAKE = 10


def _ranges(walk: ReconcileStatements) -> list[tuple[str, tuple[str, str]]]:
    """Each read of a take with the cursor it starts from: after one user, and (at the end of
    the cycle) from the first up to one."""
    return [(walk.open_users_after, (APP, "u00000")), (walk.open_users_up_to, (APP, "u05000"))]


async def test_sqlite_reads_a_take_as_a_range_of_the_partial_index(tmp_path: Path) -> None:
    path = tmp_path / "subgate.db"
    store = await open_store(f"sqlite:///{path}")
    await store.append_consent_events([accept(user_id=f"u{n:05}") for n in range(3)], NOW)
    await store.close()
    connection = sqlite3.connect(path)
    try:
        for sql, cursor in _ranges(statements_for(SQLITE).reconcile):
            plan = [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", (*cursor, 1))]

            # One range search of the index, in its order: no scan, no sort, no temporary
            # b-tree for DISTINCT.
            assert len(plan) == 1, plan
            assert plan[0].startswith(f"SEARCH consents USING INDEX {INDEX} ((app_id,user_id)")
    finally:
        connection.close()


@pytest.fixture
async def grown_walk(postgres_url: str) -> AsyncIterator[Conn]:
    """One open key, ``consents`` analysed then, then grown by ``USERS`` keys of users ``u00001``
    ... in key order, one in ``OPEN_EVERY`` open and the others cancelled: statistics that see
    one key, and a range after any user where a read in key order but not through the partial
    index would drop ``OPEN_EVERY - 1`` keys for each one it answers with."""
    store = await open_store(postgres_url)
    await store.append_consent_events([accept(user_id="u00000")], NOW)
    await store.close()
    columns = STATE_COLUMNS.split(", ")
    grown = {
        "user_id": "'u' || lpad(n::text, 5, '0')",
        "status": f"CASE WHEN n % {OPEN_EVERY} = 0 THEN status ELSE 'cancelled' END",
        "credits": f"CASE WHEN n % {OPEN_EVERY} = 0 THEN credits ELSE 0 END",
    }
    async with pooled_connection(postgres_url) as connection:
        await connection.execute("ANALYZE consents")
        await connection.execute(
            f"INSERT INTO consents ({', '.join(columns)}) "  # noqa: S608 (constants)
            f"SELECT {', '.join(grown.get(name, name) for name in columns)} "
            "FROM consents, generate_series(1, $1) AS n",
            USERS,
        )
        yield connection


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_postgres_reads_a_take_as_a_range_of_the_partial_index_whatever_its_statistics(
    grown_walk: Conn, generic: bool
) -> None:
    await _reads_only_the_users_it_takes(grown_walk, generic=generic)


async def test_postgres_reads_a_take_as_a_range_of_the_partial_index_once_analysed(
    grown_walk: Conn,
) -> None:
    await grown_walk.execute("ANALYZE consents")

    await _reads_only_the_users_it_takes(grown_walk, generic=False)


async def _reads_only_the_users_it_takes(connection: Conn, *, generic: bool) -> None:
    for sql, (app_id, user_id) in _ranges(statements_for(POSTGRES).reconcile):
        async with watched_plans(connection, "FROM consents", generic=generic) as plans:
            rows = await connection.fetch(sql, app_id, user_id, TAKE)

        assert len(rows) == TAKE
        assert [row["user_id"] for row in rows] == sorted(row["user_id"] for row in rows)
        [plan] = plans
        assert f"using {INDEX} on consents" in plan, plan
        assert rows_examined(plan, "consents") <= TAKE, plan
