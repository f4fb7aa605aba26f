"""Persistence for notifications and the consent ledger, behind the ``Store`` interface."""

from __future__ import annotations

from storage.base import Store
from storage.errors import StorageError, StorageUnavailable
from storage.sqlite import SQLiteOptions, SQLiteStore
from storage.sqlite.connection import path_from_url


async def open_store(url: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 5000) -> Store:
    """Open the store a URL names. Only ``sqlite:///path`` exists today."""
    if url.startswith("sqlite:"):
        options = SQLiteOptions(
            path=path_from_url(url), synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
        )
        return await SQLiteStore.open(options)
    raise ValueError("unsupported storage URL scheme (expected sqlite:///path)")


__all__ = [
    "SQLiteOptions",
    "SQLiteStore",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "open_store",
]
