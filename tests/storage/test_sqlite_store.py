"""SQLite-only behaviour of the store: another process holding the database's write lock."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import StorageUnavailable, Store, open_store
from tests.storage.records import notification


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'subgate.db'}", busy_timeout_ms=200)
    yield store
    await store.close()


async def test_locked_database_refuses_then_recovers(sqlite_store: Store, tmp_path: Path) -> None:
    blocker = sqlite3.connect(tmp_path / "subgate.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable):
            await sqlite_store.record_notification(notification("while-locked"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    outcome = await sqlite_store.record_notification(notification("while-locked"))

    assert not outcome.duplicate
    assert await sqlite_store.count_notifications() == 1
