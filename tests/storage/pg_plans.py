"""Watching the plans PostgreSQL runs on one connection, statements inside triggers included,
through ``auto_explain`` sending each plan to that connection as a notice: for tests that a hot
statement's plan stays led by the right index whatever the table's statistics say."""

from __future__ import annotations

import re
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import asyncpg

from storage import open_store
from storage.postgres.connection import Conn, Pool
from tests.storage.records import NOW, accept


def _watch(plans: list[str], needle: str) -> Callable[[object, asyncpg.PostgresLogMessage], None]:
    def heard(_: object, message: asyncpg.PostgresLogMessage) -> None:
        if needle in message.message:
            plans.append(message.message)

    return heard


def _explaining(generic: bool) -> str:
    return (
        "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; "
        "SET auto_explain.log_level = notice; SET auto_explain.log_nested_statements = on; "
        "SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; "
        f"SET plan_cache_mode = {'force_generic_plan' if generic else 'force_custom_plan'}"
    )


@asynccontextmanager
async def watched_plans(
    connection: Conn, needle: str, *, generic: bool = False
) -> AsyncIterator[list[str]]:
    """The plans of the statements whose text holds ``needle``, run on ``connection`` meanwhile.
    Each is planned for its parameters' values, as a prepared statement is on its first runs, or
    with ``generic`` as one plan for any values, as PostgreSQL may choose after a few."""
    plans: list[str] = []
    heard = _watch(plans, needle)
    connection.add_log_listener(heard)
    await connection.execute(_explaining(generic))
    try:
        yield plans
    finally:
        connection.remove_log_listener(heard)


def rows_examined(plan: str, table: str) -> int:
    """Rows the plan's scans of ``table`` read, kept or dropped (by a filter, or on rechecking an
    index's match), over all their loops: a plan led by the key reads only the rows it answers
    with; one that scans, or joins against a whole range, reads more as the table grows."""
    return sum(examined_by_scan(plan, table))


def examined_by_scan(plan: str, table: str) -> list[int]:
    """``rows_examined`` of each scan of ``table`` in the plan, in the plan's order."""
    scan = re.compile(rf" on {table}\b.*\(cost=.*actual time=\S+ rows=(\d+) loops=(\d+)\)")
    lines, examined = plan.splitlines(), []
    for number, line in enumerate(lines):
        found = scan.search(line)
        if not found:
            continue
        rows = int(found.group(1))
        for detail in lines[number + 1 :]:
            if "(cost=" in detail:  # the next node
                break
            dropped = re.search(r"Rows Removed by (?:Filter|Index Recheck): (\d+)", detail)
            rows += int(dropped.group(1)) if dropped else 0
        examined.append(rows * int(found.group(2)))
    return examined


@asynccontextmanager
async def watched_pool(
    url: str, needle: str, *, generic: bool = False
) -> AsyncIterator[tuple[Pool, list[str]]]:
    """A pool whose every connection reports its plans as ``watched_plans`` does, and the plans
    it reported: for code that takes connections from a pool of its own."""
    plans: list[str] = []
    heard = _watch(plans, needle)

    async def explaining(connection: asyncpg.Connection[asyncpg.Record]) -> None:
        connection.add_log_listener(heard)
        await connection.execute(_explaining(generic))

    pool = await asyncpg.create_pool(url, min_size=2, max_size=2, init=explaining)
    try:
        with warnings.catch_warnings():
            # asyncpg warns when a connection goes back to its pool still listening, which these
            # do on purpose; as an error (the test run's setting) it would break the pool.
            warnings.filterwarnings("ignore", ".*active log listener", asyncpg.InterfaceWarning)
            yield pool, plans
    finally:
        await pool.close()


@asynccontextmanager
async def pooled_connection(url: str) -> AsyncIterator[Conn]:
    """One connection of a pool of one: the kind of connection the store's code runs on."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection:
            yield connection
    finally:
        await pool.close()


OTHER_USERS = 20_000


@asynccontextmanager
async def ledger_grown_past_its_statistics(
    url: str, table: str, columns: Sequence[str]
) -> AsyncIterator[Conn]:
    """A ledger of one user's acceptance, ``table`` analysed as it is, then ``OTHER_USERS``
    copies of its row for other users (``u1``, ``u2``, ...): statistics that see one user."""
    store = await open_store(url)
    await store.append_consent_events([accept(0)], NOW)
    await store.close()
    copied = ", ".join("'u' || n" if name == "user_id" else name for name in columns)
    async with pooled_connection(url) as connection:
        await connection.execute(f"ANALYZE {table}")
        await connection.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {copied} "  # noqa: S608 (constants)
            f"FROM {table}, generate_series(1, $1) AS n",
            OTHER_USERS,
        )
        yield connection
