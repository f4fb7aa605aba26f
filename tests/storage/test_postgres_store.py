"""PostgreSQL-only behaviour: migrations under concurrency, failures, retries, lock waits."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from storage import StorageUnavailable, open_store
from storage.migrations import migrations_for
from storage.postgres import PostgresOptions, PostgresStore
from storage.postgres.connection import Conn, transact
from storage.postgres.migrate import apply_migrations
from tests.storage.postgres_env import connect_admin
from tests.storage.records import NOW, follow, notification


@pytest.fixture
async def admin(postgres_url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """A plain connection to the test schema, outside any store."""
    connection = await connect_admin(postgres_url)
    yield connection
    await connection.close()


async def test_an_unreachable_server_is_storage_unavailable() -> None:
    with pytest.raises(StorageUnavailable):
        await open_store("postgresql://postgres@127.0.0.1:1/none")


def test_the_pool_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="pool_min"):
        PostgresOptions(dsn="postgresql://h/db", pool_min=5, pool_max=2)


async def test_stores_opened_at_once_migrate_once(
    postgres_url: str, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    stores = await asyncio.gather(*(open_store(postgres_url) for _ in range(6)))
    try:
        rows = await admin.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in migrations_for("postgres")]
        assert isinstance(stores[0], PostgresStore)
        async with stores[0].pool.acquire() as connection:
            assert await apply_migrations(connection) == []
    finally:
        for store in stores:
            await store.close()


async def test_postgres_scheme_is_accepted_too(postgres_url: str) -> None:
    store = await open_store(postgres_url.replace("postgresql://", "postgres://", 1))
    try:
        await store.ping()
    finally:
        await store.close()


async def test_a_terminated_connection_is_refused_or_replaced_and_the_store_recovers(
    postgres_url: str, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    """Whether the pool notices the terminated backend before the next write is a race (the
    backend ends after ``pg_terminate_backend`` returns): that write is refused, or made on a
    fresh connection. Either way the next one finds the store whole, the notification stored
    once. (A connection lost at a chosen moment, the COMMIT, is in
    tests/server/test_postgres_ambiguous_commit.py.)"""
    name = f"subgate-test-{secrets.token_hex(4)}"
    store = await open_store(f"{postgres_url}&application_name={name}")
    try:
        await store.ping()
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            name,
        )

        try:
            first = await store.record_notification(notification("after-restart"), [follow()])
        except StorageUnavailable:
            first = None
        outcome = await store.record_notification(notification("after-restart"), [follow()])

        assert outcome.duplicate == (first is not None)
        assert await store.count_notifications() == 1
        assert len(await store.consent_events("2021000000000001")) == 1
    finally:
        await store.close()


async def test_a_row_locked_too_long_refuses_and_writes_nothing(
    postgres_url: str, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    store = await open_store(postgres_url, busy_timeout_ms=100)
    try:
        await store.append_consent_events([follow()], NOW)
        event = follow()
        async with admin.transaction():  # another process holds the key's projection row
            await admin.execute(
                "SELECT 1 FROM consents WHERE app_id = $1 AND user_id = $2 FOR UPDATE",
                event.app_id,
                event.user_id,
            )
            with pytest.raises(StorageUnavailable):
                await store.record_notification(notification("while-locked"), [event])

        assert await store.count_notifications() == 0
        outcome = await store.record_notification(notification("while-locked"), [event])
        assert not outcome.duplicate
    finally:
        await store.close()


async def test_a_deadlock_is_retried_until_both_transactions_commit(
    postgres_url: str, admin: asyncpg.Connection[asyncpg.Record]
) -> None:
    await admin.execute("CREATE TABLE pair (id INT PRIMARY KEY, n INT NOT NULL)")
    await admin.execute("INSERT INTO pair VALUES (1, 0), (2, 0)")
    store = await PostgresStore.open(PostgresOptions(dsn=postgres_url, pool_max=2))
    holding = {1: asyncio.Event(), 2: asyncio.Event()}
    runs = {1: 0, 2: 0}

    def opposite_order(first: int) -> Callable[[Conn], Awaitable[int]]:
        second = 3 - first

        async def job(connection: Conn) -> int:
            runs[first] += 1
            await connection.execute("UPDATE pair SET n = n + 1 WHERE id = $1", first)
            holding[first].set()
            await holding[second].wait()  # both hold one row: each now wants the other's
            await connection.execute("UPDATE pair SET n = n + 1 WHERE id = $1", second)
            return first

        return job

    try:
        done = await asyncio.wait_for(
            asyncio.gather(
                transact(store.pool, opposite_order(1), retries=3),
                transact(store.pool, opposite_order(2), retries=3),
            ),
            timeout=30,
        )
    finally:
        await store.close()

    assert list(done) == [1, 2]
    assert sorted(runs.values()) == [1, 2]  # PostgreSQL chose one victim; it ran again
    assert [r["n"] for r in await admin.fetch("SELECT n FROM pair ORDER BY id")] == [2, 2]


async def test_retries_are_bounded(postgres_url: str) -> None:
    store = await PostgresStore.open(PostgresOptions(dsn=postgres_url))
    calls = 0

    async def always_conflicting(connection: Conn) -> None:
        nonlocal calls
        calls += 1
        await connection.execute("INSERT INTO refusal_counts VALUES ('app', 'x', 1, 0)")
        raise asyncpg.SerializationError("could not serialize access")

    try:
        with pytest.raises(StorageUnavailable):
            await transact(store.pool, always_conflicting, retries=2)
        assert calls == 3
        assert await store.refusal_counts() == []
    finally:
        await store.close()


async def test_commits_are_durable_even_where_the_database_says_otherwise(
    postgres_url: str,
) -> None:
    store = await open_store(f"{postgres_url}&synchronous_commit=off")
    try:
        assert isinstance(store, PostgresStore)
        for _ in range(2):  # and again after the pool's reset of a released connection
            async with store.pool.acquire() as connection:
                on = await connection.fetchval("SELECT current_setting('synchronous_commit')")
            assert on == "on"
    finally:
        await store.close()


async def test_a_connection_goes_back_to_the_pool_without_an_open_transaction(
    postgres_url: str,
) -> None:
    """The pool's reset between uses is only the rollback of a transaction left open (the
    store leaves no other session state): what that transaction wrote is undone."""
    store = await open_store(postgres_url)
    try:
        assert isinstance(store, PostgresStore)
        async with store.pool.acquire() as connection:
            await connection.execute("BEGIN")
            await connection.execute(
                "INSERT INTO refusal_counts (app_id, reason, count, last_at) "
                "VALUES ('a', 'b', 1, 0)"
            )
        async with store.pool.acquire() as connection:
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT count(*) FROM refusal_counts") == 0
    finally:
        await store.close()
