from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from storage import Store, open_store

StoreFactory = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every contract test runs against each backend in this list."""
    return str(request.param)


@pytest.fixture
async def store_factory(backend: str, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens the same database again and again (to prove what survives a reopen)."""
    opened: list[Store] = []
    url = f"sqlite:///{tmp_path / 'subgate.db'}"

    async def factory() -> Store:
        store = await open_store(url, busy_timeout_ms=200)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()
