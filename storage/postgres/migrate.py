"""Apply versioned migrations to a PostgreSQL schema, once, however many processes start at once.

The first statement takes a session-level advisory lock keyed by the schema being migrated;
every other process starting at the same time waits on it, then finds the versions already
recorded and applies nothing. Each migration commits in its own transaction with its row in
``schema_migrations`` (PostgreSQL DDL is transactional), so a failed migration leaves no trace.
"""

from __future__ import annotations

import logging
import time

from storage.migrations import migrations_for
from storage.postgres.connection import Conn

logger = logging.getLogger(__name__)

# The lock key: one per schema, so databases shared by several schemas migrate independently.
_LOCK_KEY = "hashtextextended('subgate.migrate:' || current_schema(), 0)"


async def apply_migrations(connection: Conn) -> list[int]:
    """Bring the schema up to date; return the versions applied by this call."""
    await connection.execute(f"SELECT pg_advisory_lock({_LOCK_KEY})")
    try:
        return await _apply_pending(connection)
    finally:
        await connection.execute(f"SELECT pg_advisory_unlock({_LOCK_KEY})")


async def _apply_pending(connection: Conn) -> list[int]:
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
    )
    done = {row[0] for row in await connection.fetch("SELECT version FROM schema_migrations")}
    applied = []
    for migration in migrations_for("postgres"):
        if migration.version in done:
            continue
        async with connection.transaction():
            await connection.execute(migration.sql)  # simple protocol: several statements
            await connection.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                int(time.time() * 1000),
            )
        logger.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration.version)
    return applied
