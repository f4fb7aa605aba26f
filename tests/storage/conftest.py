from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from storage import Store, open_store
from storage.postgres import PostgresStore
from tests.storage.postgres_env import fresh_schema, server_url

StoreFactory = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every contract test runs against each backend in this list."""
    return str(request.param)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A URL of a fresh, empty schema on the test server (skips when none is configured)."""
    async with fresh_schema(server_url()) as url:
        yield url


@pytest.fixture
async def postgres_store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    """A PostgreSQL store on a fresh schema, for tests of what only PostgreSQL does."""
    opened = await open_store(postgres_url)
    assert isinstance(opened, PostgresStore)
    yield opened
    await opened.close()


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'subgate.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store_factory(backend: str, store_url: str) -> AsyncIterator[StoreFactory]:
    """Opens the same database again and again (to prove what survives a reopen)."""
    opened: list[Store] = []

    async def factory() -> Store:
        if backend == "sqlite":
            store = await open_store(store_url, busy_timeout_ms=200)
        else:
            store = await open_store(store_url)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()
