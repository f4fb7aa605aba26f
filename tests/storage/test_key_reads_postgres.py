"""PostgreSQL's single-key reads of one turn of the event loop go as one statement
(``storage.postgres.key_reads``): each key still gets its own answer, each is read through an
index on its whole key whatever the statistics say, and a failed read reaches every key."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from storage import StorageUnavailable
from storage.models import ConsentSummary
from storage.postgres import PostgresStore, key_reads
from storage.postgres.connection import columns_of, fetch
from storage.sql.dialect import POSTGRES
from storage.sql.ledger import STATE_COLUMNS
from storage.sql.statements import statements_for
from tests.storage.pg_plans import ledger_grown_past_its_statistics, rows_examined, watched_plans
from tests.storage.records import APP, NOW, TEMPLATE, USER, accept

USERS = ("u1", "u2", "u3")


async def summary(store: PostgresStore, user: str) -> ConsentSummary | None:
    return await store.consent_summary(APP, user, "mini_template", TEMPLATE)


@pytest.fixture
def statements_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements the key reads send (still sent: this only notes them)."""
    sent: list[str] = []

    async def noted(reader: Any, sql: str, *args: Any) -> list[Any]:
        sent.append(sql)
        return await fetch(reader, sql, *args)

    monkeypatch.setattr(key_reads, "fetch", noted)
    return sent


async def test_the_keys_of_one_turn_are_one_statement_each_answered_alone(
    postgres_store: PostgresStore, statements_sent: list[str]
) -> None:
    events = [accept(n, user_id=user) for n, user in enumerate(USERS, 1) for _ in range(n)]
    await postgres_store.append_consent_events(events, NOW)

    answers = await asyncio.gather(
        *(summary(postgres_store, user) for user in ("u3", "nobody", "u1", "u3", "u2"))
    )

    assert [a.credits if a else None for a in answers] == [3, None, 1, 3, 2]
    assert statements_sent == [
        key_reads.TURN_STATEMENTS[statements_for(POSTGRES).ledger.summary_of_key]
    ]


async def test_a_lone_key_is_its_statement_alone(
    postgres_store: PostgresStore, statements_sent: list[str]
) -> None:
    await postgres_store.append_consent_events([accept(1, user_id="u1")], NOW)

    answer = await summary(postgres_store, "u1")

    assert answer is not None and answer.credits == 1
    assert statements_sent == [statements_for(POSTGRES).ledger.summary_of_key]


async def test_a_failed_read_reaches_every_key_of_its_turn(
    postgres_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary_of_key = statements_for(POSTGRES).ledger.summary_of_key
    broken = {**key_reads.TURN_STATEMENTS, summary_of_key: "SELECT no_such_column FROM consents"}
    monkeypatch.setattr(key_reads, "TURN_STATEMENTS", broken)

    answers = await asyncio.gather(
        *(summary(postgres_store, user) for user in USERS), return_exceptions=True
    )

    assert all(isinstance(a, StorageUnavailable) for a in answers), answers


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_a_turn_reads_each_key_through_an_index_whatever_the_statistics(
    postgres_url: str, generic: bool
) -> None:
    """On a ledger grown past its statistics, the turn's statement reads at most one row a
    key, by its whole key."""
    columns = STATE_COLUMNS.split(", ")
    keys: Sequence[Sequence[str]] = [
        (APP, user, "mini_template", TEMPLATE) for user in (USER, "u7", "u8", "no-one")
    ]
    sql = key_reads.TURN_STATEMENTS[statements_for(POSTGRES).ledger.state_of_key]
    async with ledger_grown_past_its_statistics(postgres_url, "consents", columns) as connection:
        plans_of = watched_plans(connection, "FROM consents", generic=generic)
        async with plans_of as plans:
            rows = await connection.fetch(sql, *columns_of(keys, key_reads.KEY_WIDTH))

    assert sorted(row[0] for row in rows) == [1, 2, 3]
    [plan] = plans
    assert "Index Scan using" in plan and "(user_id = k.p2)" in plan, plan
    assert rows_examined(plan, "consents") <= len(keys), plan  # at most a row a key
