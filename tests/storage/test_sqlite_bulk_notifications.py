"""Notifications written in bulk are recorded exactly as if written one after another."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.migrations import migrations_for
from storage.sqlite.notifications import (
    ROWS_PER_STATEMENT,
    NotificationRow,
    ids_query,
    record_many,
    record_one,
)


def fresh_database() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    for migration in migrations_for("sqlite"):
        connection.executescript(migration.sql)
    return connection


def row(app_id: str, dedupe_key: str) -> NotificationRow:
    body = f"notify_id={dedupe_key}".encode()
    return (app_id, dedupe_key, "k", "h", body, "utf-8", "RSA2", "V1", "key#0", 1, 2)


def stored(connection: sqlite3.Connection) -> list[tuple[object, ...]]:
    return connection.execute("SELECT * FROM notifications ORDER BY id").fetchall()


_keys = st.tuples(st.sampled_from(["2021A", "2021B"]), st.sampled_from(["n1", "n2", "n3", "n'4"]))


@settings(max_examples=200, deadline=None)
@given(before=st.lists(_keys, max_size=4), batch=st.lists(_keys, min_size=1, max_size=12))
def test_bulk_equals_one_after_another(
    before: list[tuple[str, str]], batch: list[tuple[str, str]]
) -> None:
    one_by_one, bulk = fresh_database(), fresh_database()
    for connection in (one_by_one, bulk):
        for app_id, key in before:
            record_one(connection, row(app_id, key))

    expected = [record_one(one_by_one, row(*key)) for key in batch]
    actual = record_many(bulk, [row(*key) for key in batch])

    assert actual == expected
    assert stored(bulk) == stored(one_by_one)


def test_more_rows_than_one_statement_takes() -> None:
    connection = fresh_database()
    count = ROWS_PER_STATEMENT * 2 + 7
    rows = [row("2021A", f"n{i}") for i in range(count)] + [row("2021A", "n0")]

    recorded = record_many(connection, rows)

    assert [duplicate for _, duplicate in recorded] == [False] * count + [True]
    assert recorded[-1][0] == recorded[0][0]
    assert len({ident for ident, _ in recorded}) == count == len(stored(connection))


def test_the_key_lookup_searches_the_index_not_the_table() -> None:
    """At a million stored notifications a scan per batch would be the bottleneck."""
    connection = fresh_database()
    plan = connection.execute("EXPLAIN QUERY PLAN " + ids_query(2), ["a", "b", "c", "d"])
    details = " | ".join(str(step[3]) for step in plan)

    assert "SEARCH n USING" in details
    assert "SCAN n" not in details and "SCAN notifications" not in details
