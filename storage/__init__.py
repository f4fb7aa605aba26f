"""Persistence for notifications, the consent ledger, the outbox and the event log with its
deliveries, behind the ``Store`` interface.

``open_store`` opens the store a URL names; ``Store`` (``base``, the console's reads in
``console_queries``) is all the server sees of it.
Next to them live what every backend shares: the models (``models``), the errors (``errors``),
the ledger's fold (``ledger``) and the rules of a send (``sending``), the time and JSON codecs,
the SQL both databases speak (``sql``) and group commit (``group_commit``); each backend
(``sqlite``, ``postgres``) keeps only its connections, transactions, locking and what truly
differs. Nothing in ``storage`` imports the server or the verifier; only the backends import a
database driver.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from storage.base import Store
from storage.errors import StorageError, StorageUnavailable
from storage.sqlite import SQLiteOptions, SQLiteStore
from storage.sqlite.connection import DEFAULT_READ_MMAP_MB, path_from_url

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
    read_mmap_mb: int = DEFAULT_READ_MMAP_MB,
) -> Store:
    """Open (and migrate) the store a URL names.

    ``sqlite:///path``: the embedded default; ``synchronous``, ``busy_timeout_ms`` and
    ``read_mmap_mb`` (memory-mapped reads, 0 for none) apply.
    ``postgresql://user@host:5432/db``: shared by several processes; a pool of ``pool_min`` to
    ``pool_max`` connections, and ``busy_timeout_ms`` is how long a row lock is waited for.
    """
    if url.startswith("sqlite:"):
        options = SQLiteOptions(
            path=path_from_url(url),
            synchronous=synchronous,
            busy_timeout_ms=busy_timeout_ms,
            read_mmap_mb=read_mmap_mb,
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
    "DEFAULT_READ_MMAP_MB",
    "SQLiteOptions",
    "SQLiteStore",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "open_store",
]
