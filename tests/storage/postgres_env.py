"""The test PostgreSQL server: its URL from the environment, a fresh schema per test.

``SUBGATE_TEST_POSTGRES_URL`` unset: PostgreSQL tests skip, saying so. Set but unreachable: they
fail, so a CI whose database did not start can never pass by skipping.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

POSTGRES_ENV = "SUBGATE_TEST_POSTGRES_URL"
SKIP_REASON = (
    f"{POSTGRES_ENV} is not set, so the PostgreSQL store is not tested here "
    "(CI sets it to postgresql://postgres@127.0.0.1:5432/test)"
)


def server_url() -> str:
    """The server to test against; skips the test when none is configured."""
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        pytest.skip(SKIP_REASON)
    return url


def with_search_path(url: str, schema: str) -> str:
    """The same server, every connection working in ``schema`` (asyncpg: a server setting)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("search_path", schema)])))


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


_UNREACHABLE: dict[str, str] = {}  # url -> why: a dead server fails every test at once


async def connect_admin(url: str) -> asyncpg.Connection[asyncpg.Record]:
    why = _UNREACHABLE.get(url)
    if why is None:
        try:
            return await asyncpg.connect(url, timeout=10)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            why = _UNREACHABLE[url] = f"{type(error).__name__}: {error}"
    pytest.fail(
        f"{POSTGRES_ENV} is set but PostgreSQL at {_where(url)} cannot be used: {why}",
        pytrace=False,
    )


@asynccontextmanager
async def fresh_schema(url: str) -> AsyncIterator[str]:
    """A new empty schema on the server; yields a URL that works in it; drops it afterwards."""
    schema = f"subgate_test_{secrets.token_hex(6)}"
    admin = await connect_admin(url)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await admin.close()
    try:
        yield with_search_path(url, schema)
    finally:
        admin = await connect_admin(url)
        try:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await admin.close()
