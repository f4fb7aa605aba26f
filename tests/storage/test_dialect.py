"""The shared statements, written once, rendered for each database."""

from __future__ import annotations

import re
from dataclasses import fields

from storage.sql.dialect import POSTGRES, SQLITE, marks
from storage.sql.events import EVENTS, EventStatements
from storage.sql.ledger import LEDGER, LedgerStatements
from storage.sql.notifications import NOTIFICATIONS, NotificationStatements
from storage.sql.outbox import OUTBOX, OutboxStatements
from storage.sql.statements import statements_for


def test_postgres_numbers_the_parameters_in_order_and_sqlite_keeps_them() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c IN (?, ?) AND d > ?"

    assert POSTGRES.render(sql) == "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) AND d > $4"
    assert SQLITE.render(sql) == sql


def test_the_larger_of_two_values_is_spelled_as_each_database_does() -> None:
    assert "max(refusal_counts.last_at" in statements_for(SQLITE).notifications.add_refusals
    assert "greatest(refusal_counts.last_at" in statements_for(POSTGRES).notifications.add_refusals
    assert "{greatest}" in NOTIFICATIONS.add_refusals


def test_every_shared_statement_is_rendered_once_per_dialect() -> None:
    assert statements_for(SQLITE) is statements_for(SQLITE)
    assert statements_for(POSTGRES) is statements_for(POSTGRES)


def test_each_rendered_statement_has_as_many_parameters_as_its_neutral_text() -> None:
    neutral: dict[
        str, EventStatements | LedgerStatements | NotificationStatements | OutboxStatements
    ] = {
        "events": EVENTS,
        "ledger": LEDGER,
        "notifications": NOTIFICATIONS,
        "outbox": OUTBOX,
    }
    for group, statements in neutral.items():
        sqlite = getattr(statements_for(SQLITE), group)
        postgres = getattr(statements_for(POSTGRES), group)
        for field in fields(statements):
            text = getattr(statements, field.name)
            count = text.count("?") + 2 * text.count("{after}")  # a position: (txid, id)
            numbers = [int(n) for n in re.findall(r"\$(\d+)", getattr(postgres, field.name))]
            assert numbers == list(range(1, count + 1)), field.name
            assert "?" not in getattr(postgres, field.name), field.name
            assert getattr(sqlite, field.name).count("?") == count, field.name
            assert "{" not in getattr(sqlite, field.name), field.name


def test_the_event_log_is_read_in_each_databases_own_terms() -> None:
    """SQLite's txid is always 0: a position is its id there, read from the rowid in order.
    PostgreSQL reads only events older than every transaction still running."""
    sqlite, postgres = statements_for(SQLITE).events, statements_for(POSTGRES).events

    assert "e.txid = ? AND e.id > ? AND e.txid = 0 ORDER BY" in sqlite.heads_after
    assert (
        "(e.txid, e.id) > ($1, $2) AND e.txid < pg_snapshot_xmin(pg_current_snapshot())"
        in postgres.heads_after
    )
    assert "{after} AND {settled}" in EVENTS.heads_after


def test_marks_lists_parameters() -> None:
    assert marks(3) == "?, ?, ?"
