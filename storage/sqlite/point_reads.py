"""Single-key reads on the event loop's thread, a turn of the loop at a time.

A key's read is asked for by a request handler and answered at the end of the loop's turn,
together with every other key asked for in that turn, in one read transaction. Read one at a
time between the requests' other work, each read paid for its own read transaction (a lock taken
and released on the WAL index, the file's size read again) and found SQLite's code and the
ledger's upper pages evicted from the core's caches by that work; read back to back, those come
once for the turn (bench/README.md, "Lookups"). The reads of a turn see one snapshot, as one read
would: a key asked for after a write's commit is read after it.

A lone read is its statement alone, as before. A read that SQLite refuses fails every key of the
turn not yet read with that error; the store decides what a refusal means (a busy file: the
reader thread's turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from typing import Any

from storage.sql.rows import Row

Waiting = tuple[str, Sequence[Any], asyncio.Future[list[Row]]]


class PointReads:
    """The event loop's read-only connection and the keys waiting for this turn's read; used
    on the event loop's thread only."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self._waiting: list[Waiting] = []

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """``sql``'s rows, read at the end of this turn of the loop with the turn's other keys;
        the ``sqlite3.Error`` the read met, raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Row]] = loop.create_future()
        self._waiting.append((sql, params, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._read_waiting)
        return await future

    def _read_waiting(self) -> None:
        waiting = [entry for entry in self._waiting if not entry[2].done()]  # not cancelled
        self._waiting = []
        together = len(waiting) > 1
        try:
            if together:
                self.connection.execute("BEGIN")
            for sql, params, future in waiting:
                future.set_result(self.connection.execute(sql, params).fetchall())
            if together:
                self.connection.execute("COMMIT")
        except Exception as error:  # every key not yet read meets it; none is left waiting
            for _, _, future in waiting:
                if not future.done():
                    future.set_exception(error)
            self._end_transaction()

    def _end_transaction(self) -> None:
        # A closed or broken connection: the next turn meets it again.
        with contextlib.suppress(sqlite3.Error):
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
