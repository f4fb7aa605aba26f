"""Single-key reads on PostgreSQL, a turn of the event loop at a time.

The keys asked for in one turn (``storage.turn_reads``) are read with one statement per kind of
read: the key read's own statement, as a LATERAL subquery of the turn's keys (``unnest`` of its
four text parameters, in order), one round trip instead of one a key. Its ``LIMIT 1`` (a key has
one row) keeps PostgreSQL from pulling the subquery up into a join it might plan as a scan, as
``storage.postgres.summaries`` explains; each key is still read through its whole key. A turn of
one key is its statement alone. A read that fails fails every key it read.
"""

# ruff: noqa: S608 (the statements are built from constants, at import)
from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from storage.errors import StorageUnavailable
from storage.postgres.connection import Pool, columns_of, fetch
from storage.sql.dialect import POSTGRES
from storage.sql.ledger import LEDGER
from storage.sql.rows import Row
from storage.turn_reads import KeyRead, TurnReads

KEY_WIDTH = 4  # app_id, user_id, channel, template_id


def turn_statement(key_read: str) -> str:
    """``key_read`` for many keys: each result row starts with its key's position (from 1)."""
    inner = re.sub(r"\$([1-4])\b", r"k.p\1", key_read)
    arrays = ", ".join(f"${n}::text[]" for n in range(1, KEY_WIDTH + 1))
    return (
        f"SELECT k.nth, r.* FROM unnest({arrays}) WITH ORDINALITY "
        f"AS k(p1, p2, p3, p4, nth) CROSS JOIN LATERAL ({inner} LIMIT 1) AS r"
    )


_SQL = POSTGRES.render_all(LEDGER)
# The key reads a store makes (``StoreReads._fetch_key``), each with its statement for a turn.
TURN_STATEMENTS = {sql: turn_statement(sql) for sql in (_SQL.state_of_key, _SQL.summary_of_key)}


class KeyReads:
    """The turn's key reads of one pool; event loop only."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._turn: TurnReads[KeyRead, Sequence[Row]] = TurnReads(self._start)
        self._reading: set[asyncio.Task[None]] = set()

    async def fetch(self, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        """``sql``'s rows for one key, read with the turn's other keys of the same read."""
        if sql not in TURN_STATEMENTS:
            return await fetch(self._pool, sql, *params)
        return await self._turn.ask((sql, params))

    def _start(self, waiting: list[tuple[KeyRead, asyncio.Future[Sequence[Row]]]]) -> None:
        groups: dict[str, list[tuple[Sequence[Any], asyncio.Future[Sequence[Row]]]]] = {}
        for (sql, params), future in waiting:
            groups.setdefault(sql, []).append((params, future))
        for sql, keys in groups.items():
            task = asyncio.create_task(self._read(sql, keys))
            self._reading.add(task)  # held until done: a task only the loop refers to may go
            task.add_done_callback(self._reading.discard)

    async def _read(
        self, sql: str, keys: list[tuple[Sequence[Any], asyncio.Future[Sequence[Row]]]]
    ) -> None:
        try:
            if len(keys) == 1:
                [(params, future)] = keys
                rows: list[Any] = await fetch(self._pool, sql, *params)
                answers = [rows]
            else:
                arrays = columns_of([params for params, _ in keys], KEY_WIDTH)
                answers = [[] for _ in keys]
                for row in await fetch(self._pool, TURN_STATEMENTS[sql], *arrays):
                    answers[row[0] - 1].append(tuple(row)[1:])
        except Exception as error:  # every key of the read meets it; none is left waiting
            for _, future in keys:
                if not future.done():
                    future.set_exception(_own_copy(error))
            return
        except BaseException:  # cancelled (the loop is closing): so are the reads it carried
            for _, future in keys:
                future.cancel()
            raise
        for (_, future), answer in zip(keys, answers, strict=True):
            if not future.done():
                future.set_result(answer)


def _own_copy(error: Exception) -> Exception:
    """The store's refusal as an exception of each caller's own (one raised by several tasks
    would carry their tracebacks mixed); anything else, as it came."""
    if not isinstance(error, StorageUnavailable):
        return error
    copy = StorageUnavailable(str(error))
    copy.__cause__ = error.__cause__
    return copy
