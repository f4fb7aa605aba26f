from __future__ import annotations

import sqlite3
from pathlib import Path

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
