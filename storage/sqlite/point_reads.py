"""Single-key reads on the event loop's thread, a turn of the loop at a time.

A key's read is asked for by a request handler and answered at the end of the loop's turn,
together with every other key asked for in that turn (``storage.turn_reads``), in one read
transaction. Read one at a time between the requests' other work, each read paid for its own
read transaction (a lock taken and released on the WAL index, the file's size read again) and
found SQLite's code and the ledger's upper pages evicted from the core's caches by that work;
read back to back, those come once for the turn (bench/README.md, "Lookups"). The reads of a
turn see one snapshot, as one read would: a key asked for after a write's commit is read after
it.

A lone read is its statement alone, as before. A read that fails fails its own key only, with its
own error; the store decides what a refusal means (a busy file: the reader thread's turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from typing import Any

from storage.sql.rows import Row
from storage.turn_reads import KeyRead, TurnReads


class PointReads:
    """The event loop's read-only connection and the turn's keys; event loop only."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self._turn: TurnReads[KeyRead, list[Row]] = TurnReads(self._read)

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """``sql``'s rows, read at the end of this turn of the loop with the turn's other keys;
        the ``sqlite3.Error`` the read met, raised."""
        return await self._turn.ask((sql, params))

    def _read(self, waiting: list[tuple[KeyRead, asyncio.Future[list[Row]]]]) -> None:
        together = len(waiting) > 1 and self._begin()
        try:
            for (sql, params), future in waiting:
                try:
                    rows = self.connection.execute(sql, params).fetchall()
                except Exception as error:  # its own key's error, for its own caller
                    future.set_exception(error)
                else:
                    future.set_result(rows)
        finally:
            if together:
                self._end_transaction()

    def _begin(self) -> bool:
        """One read transaction for the turn; False (each key read alone) if SQLite refuses."""
        self._end_transaction()  # never one left open: it would hold an old snapshot
        try:
            self.connection.execute("BEGIN")
        except sqlite3.Error:
            return False
        return True

    def _end_transaction(self) -> None:
        # A closed or broken connection: the next turn meets it again.
        with contextlib.suppress(sqlite3.Error):
            if self.connection.in_transaction:
                self.connection.execute("COMMIT")
