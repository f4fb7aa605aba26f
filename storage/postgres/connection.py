"""The asyncpg pool, and the one way the store runs a transaction or a read.

Every failure of the database or of the connection becomes ``StorageUnavailable``: the
transaction was rolled back (or never reached the server), so the caller may retry the whole
operation. Serialization failures and deadlocks are PostgreSQL asking for exactly that retry;
``transact`` makes it here, a bounded number of times, before giving up.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage.errors import StorageUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")
# asyncpg's classes are generic only to the type checker.
Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
Job: TypeAlias = "Callable[[Conn], Awaitable[T]]"

# What a broken database or connection raises: never a domain refusal.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """How to reach the database. ``dsn`` query parameters that asyncpg does not know itself
    (``search_path``, ``application_name``...) become settings of every connection."""

    dsn: str
    pool_min: int = 1
    pool_max: int = 10
    lock_timeout_ms: int = 5000  # a row lock waited on longer than this: StorageUnavailable
    connect_timeout: float = 10.0
    command_timeout: float = 30.0
    retries: int = 5  # extra attempts after a serialization failure or deadlock

    def __post_init__(self) -> None:
        if not 0 <= self.pool_min <= self.pool_max or self.pool_max < 1:
            raise ValueError("need 0 <= pool_min <= pool_max and pool_max >= 1")


async def open_pool(options: PostgresOptions) -> Pool:
    """The pool, each connection waiting at most ``lock_timeout_ms`` for a row lock.

    A commit must return only once it is durable: a notification is acknowledged after its
    batch's COMMIT. Where ``synchronous_commit`` is ``off`` (for the server, the database, the
    role or in the URL) the pool is opened again with it ``on`` for every connection (a setting
    of the connection's start, which the pool's reset between uses keeps)."""
    # lock_timeout 0 would mean "wait forever": the smallest wait is 1 ms.
    settings = {"lock_timeout": f"{max(1, options.lock_timeout_ms)}ms"}
    try:
        pool = await _create_pool(options, settings)
        if await pool.fetchval("SELECT current_setting('synchronous_commit')") != "off":
            return pool
        await pool.close()
        return await _create_pool(options, {**settings, "synchronous_commit": "on"})
    except DATABASE_ERRORS as error:
        raise StorageUnavailable(f"cannot reach PostgreSQL: {describe(error)}") from error


async def _create_pool(options: PostgresOptions, settings: dict[str, str]) -> Pool:
    return await asyncpg.create_pool(
        options.dsn,
        min_size=options.pool_min,
        max_size=options.pool_max,
        timeout=options.connect_timeout,
        command_timeout=options.command_timeout,
        server_settings=settings,
        reset=_keep_session,
    )


async def _keep_session(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """Nothing to undo when a connection goes back to the pool: the store leaves no session
    state behind (no SET, LISTEN, open cursor or session advisory lock; migrations release
    theirs), and the pool rolls back a transaction left open by itself. asyncpg's default reset
    is a round trip of four statements after every use: one more per single-statement read."""


async def transact(pool: Pool, job: Job[T], *, retries: int, atomic: bool = True) -> T:
    """Run ``job`` in one READ COMMITTED transaction; commit its result or roll it all back.

    Exceptions raised by ``job`` itself (a ``LedgerRefusal``) roll back and propagate unchanged.
    ``atomic=False``: no BEGIN and COMMIT around ``job``, two round trips fewer; each statement
    commits on its own, for a job whose writes are a single statement.
    """
    for attempt in range(retries + 1):
        try:
            async with pool.acquire() as connection:
                if not atomic:
                    return await job(connection)
                async with connection.transaction():
                    return await job(connection)
        except _RETRYABLE as error:
            if attempt == retries:
                raise StorageUnavailable(
                    f"gave up after {attempt + 1} tries: {describe(error)}"
                ) from error
            logger.info("retrying a transaction after %s", describe(error))
            await asyncio.sleep(random.uniform(0.002, 0.02) * (attempt + 1))  # noqa: S311
        except DATABASE_ERRORS as error:
            raise StorageUnavailable(f"store unavailable: {describe(error)}") from error
    raise AssertionError("unreachable")  # pragma: no cover


async def fetch(reader: Pool | Conn, sql: str, *args: Any) -> list[asyncpg.Record]:
    """One read statement (on a pool: its own snapshot, no transaction of ours)."""
    try:
        return list(await reader.fetch(sql, *args))
    except DATABASE_ERRORS as error:
        raise StorageUnavailable(f"read failed: {describe(error)}") from error


def describe(error: BaseException) -> str:
    """An error as the log and ``StorageUnavailable`` say it: with its SQLSTATE, if any."""
    state = getattr(error, "sqlstate", None)
    name = type(error).__name__
    return f"{name} ({state}): {error}" if state else f"{name}: {error}"


def columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as one list per column: the array parameters of an ``unnest``."""
    return [[row[i] for row in rows] for i in range(width)]
