from __future__ import annotations

import sqlite3
from pathlib import Path

from storage import open_store
from storage.migrations import migrations_for
from storage.sqlite.migrate import apply_migrations


def test_migrations_apply_once_and_record_their_versions(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "m.db", isolation_level=None)

    first = apply_migrations(connection)
    second = apply_migrations(connection)

    expected = [m.version for m in migrations_for("sqlite")]
    assert first == expected and second == []
    recorded = [row[0] for row in connection.execute("SELECT version FROM schema_migrations")]
    assert recorded == expected


async def test_rows_stored_before_fields_were_dropped_read_back_after_the_upgrade(
    tmp_path: Path,
) -> None:
    """0005 drops the ``fields`` JSON column; rows written under 0001-0004 keep their content."""
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(
        "CREATE TABLE schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    for migration in migrations_for("sqlite")[:4]:
        connection.executescript(migration.sql)
        connection.execute(
            "INSERT INTO schema_migrations VALUES (?, ?, 0)", (migration.version, migration.name)
        )
    body = "notify_id=n-old&subject=语雀空间+500人规模&charset=gbk".encode("gbk")
    connection.execute(
        "INSERT INTO notifications (app_id, dedupe_key, kind, handler, fields, raw_body, charset,"
        " sign_type, rule, key_label, occurred_at, received_at)"
        " VALUES ('2021', 'n-old', 'k', 'h', '{}', ?, 'gbk', 'RSA2', 'V1', 'key#0', 1, 2)",
        (body,),
    )
    connection.close()

    store = await open_store(f"sqlite:///{path}")
    try:
        stored = await store.get_notification("2021", "n-old")
    finally:
        await store.close()

    assert stored is not None and stored.raw_body == body
    expected = {"notify_id": "n-old", "subject": "语雀空间 500人规模", "charset": "gbk"}
    assert stored.fields == expected
