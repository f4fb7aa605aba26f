"""Persistence for notifications and the consent ledger, behind the ``Store`` interface."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from storage.base import Store
from storage.errors import StorageError, StorageUnavailable
from storage.sqlite import SQLiteOptions, SQLiteStore
from storage.sqlite.connection import path_from_url

POSTGRES_SCHEMES = ("postgresql:", "postgres:")


def redacted_url(url: str) -> str:
    """The URL with any password replaced by ``***``: safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def open_store(
    url: str,
    *,
    synchronous: str = "FULL",
    busy_timeout_ms: int = 5000,
    pool_min: int = 1,
    pool_max: int = 10,
) -> Store:
    """Open (and migrate) the store a URL names.

    ``sqlite:///path``: the embedded default; ``synchronous`` and ``busy_timeout_ms`` apply.
    ``postgresql://user@host:5432/db``: shared by several processes; a pool of ``pool_min`` to
    ``pool_max`` connections, and ``busy_timeout_ms`` is how long a row lock is waited for.
    """
    if url.startswith("sqlite:"):
        options = SQLiteOptions(
            path=path_from_url(url), synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
        )
        return await SQLiteStore.open(options)
    if url.startswith(POSTGRES_SCHEMES):
        from storage.postgres import PostgresOptions, PostgresStore  # asyncpg only when used

        return await PostgresStore.open(
            PostgresOptions(
                dsn=url, pool_min=pool_min, pool_max=pool_max, lock_timeout_ms=busy_timeout_ms
            )
        )
    raise ValueError(
        "unsupported storage URL scheme (expected sqlite:///path or postgresql://host/db)"
    )


__all__ = [
    "SQLiteOptions",
    "SQLiteStore",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "open_store",
]
