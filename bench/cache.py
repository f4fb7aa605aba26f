"""Where pre-built databases are cached: bench/.cache (gitignored), keyed by the store's schema.

A database built under one schema is never reused under another: the name carries a digest of
every SQLite migration, so a new migration means a rebuild rather than migrating gigabytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.intake import CACHE
from storage.migrations import migrations_for

__all__ = ["CACHE", "cached_database", "schema_tag"]


def schema_tag() -> str:
    digest = hashlib.sha256()
    for migration in migrations_for("sqlite"):
        digest.update(f"{migration.version}\n{migration.sql}\n".encode())
    return digest.hexdigest()[:10]


def cached_database(stem: str) -> Path:
    """``bench/.cache/<stem>-<schema>.db``; copies built under an older schema are removed."""
    path = CACHE / f"{stem}-{schema_tag()}.db"
    for old in CACHE.glob(f"{stem}-*"):
        if not old.name.startswith(path.name.removesuffix(".db")):
            old.unlink()
    return path
